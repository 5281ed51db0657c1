// Bytes that add up where reports are stored and where operations are shown (issue 16, item 8).
import { describe, expect, it } from "vitest";
import { boundedProgress, doneWithin, replicaBytes } from "../../api/catalog/progress.ts";

describe("replicaBytes", () => {
  it("records a manager's report of the whole version as it is", () => {
    expect(
      replicaBytes({ state: "transferring", bytes_done: 80, bytes_total: 100, bytes_received: 0 }, 100),
    ).toEqual({
      bytesDone: 80,
      bytesTotal: 100,
      bytesReceived: 0,
    });
    expect(
      replicaBytes({ state: "transferring", bytes_done: 95, bytes_total: 100, bytes_received: 15 }, 100),
    ).toEqual({
      bytesDone: 95,
      bytesTotal: 100,
      bytesReceived: 15,
    });
  });

  it("takes an older manager's resumed pull (only what was missing as its total) as the rest of the version", () => {
    // 80/100, then the pull resumed and counted 20 missing bytes: 80/20 before, 85/100 now.
    const first = replicaBytes({ state: "transferring", bytes_done: 80, bytes_total: 100 }, 100);
    expect(first).toEqual({ bytesDone: 80, bytesTotal: 100, bytesReceived: 80 });
    const resumed = [0, 5, 20].map((done) =>
      replicaBytes({ state: "transferring", bytes_done: done, bytes_total: 20 }, 100),
    );
    expect(resumed.map((r) => [r.bytesDone, r.bytesTotal, r.bytesReceived])).toEqual([
      [80, 100, 0],
      [85, 100, 5],
      [100, 100, 20],
    ]);
    expect(replicaBytes({ state: "available", bytes_done: 20, bytes_total: 20 }, 100)).toEqual({
      bytesDone: 100,
      bytesTotal: 100,
      bytesReceived: 20,
    });
  });

  it("never stores more done than the version's size, whatever is reported", () => {
    expect(replicaBytes({ state: "transferring", bytes_done: 500, bytes_total: 100 }, 100)).toMatchObject({
      bytesDone: 100,
      bytesTotal: 100,
    });
    expect(replicaBytes({ state: "transferring", bytes_done: 30, bytes_total: 10 }, 100)).toMatchObject({
      bytesDone: 100,
      bytesTotal: 100,
    });
    expect(replicaBytes({ state: "transferring", bytes_done: 7000 }, 4096)).toMatchObject({
      bytesDone: 4096,
      bytesTotal: 4096,
    });
  });

  it("an available copy holds the whole version; a report without bytes changes none", () => {
    // An upload's commit at the origin says nothing of bytes.
    expect(replicaBytes({ state: "available" }, 4096)).toEqual({ bytesDone: 4096, bytesTotal: 4096 });
    expect(replicaBytes({ state: "transferring" }, 4096)).toEqual({});
    expect(replicaBytes({ state: "failed" }, 4096)).toEqual({});
    expect(replicaBytes({ state: "transferring", bytes_total: 10 }, 4096)).toEqual({ bytesTotal: 4096 });
  });
});

describe("boundedProgress", () => {
  it("shows an operation recorded as 80/20 as 20/20, per datacenter too; an unknown total bounds nothing", () => {
    const shown = boundedProgress({
      step: "transferring-image",
      bytes_done: 80,
      bytes_total: 20,
      children: [
        { datacenter: "us-east-a", step: "transferring-image", bytes_done: 80, bytes_total: 20 },
        { datacenter: "ap-south-a", step: "transferring-image", bytes_done: 5, bytes_total: null },
      ],
    });
    expect([shown.bytes_done, shown.bytes_total]).toEqual([20, 20]);
    expect(shown.children.map((c) => [c.bytes_done, c.bytes_total])).toEqual([
      [20, 20],
      [5, null],
    ]);
    expect(doneWithin(-1, 10)).toBe(0);
  });
});
