// A pull's progress describes the whole version: a resumed pull reports what the store holds
// already and climbs to total/total; done never exceeds total (issue 16, item 8).
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { replicaBytes } from "../../api/catalog/progress.ts";
import { mergeProgress } from "../../api/orchestrator/runner.ts";
import { sha256Hex, zeroChunkDigest } from "../../common/image-format/digest.ts";
import type { ChunkRef, Manifest } from "../../common/image-format/manifest.ts";
import { ImageStore } from "../../regional-manager/store/image-store.ts";
import { chunkArrived, notArrived, versionHoldings } from "../../regional-manager/transfer/progress.ts";
import { type PullProgress, pullImageVersion } from "../../regional-manager/transfer/pull.ts";
import type { ReplicaReport } from "../../regional-manager/transfer/reporter.ts";
import type { OperationProgress } from "../../schemas/operations.ts";
import { seededBytes, type TestKeys } from "../support/transfer.ts";
import { type ProxiedSource, startProxiedSource } from "./proxied-source.ts";
import type { TransferProxy } from "./proxy.ts";

const digestOf = (n: number) => n.toString(16).padStart(64, "0");
const chunk = (n: number, length: number): ChunkRef => ({ digest: digestOf(n), length, zero: false });

describe("versionHoldings", () => {
  // 100 bytes: a, a zero run, b used twice, c.
  const zero: ChunkRef = { digest: zeroChunkDigest(20), length: 20, zero: true };
  const manifest: Manifest = {
    size: 100,
    digest: digestOf(99),
    chunks: [chunk(1, 20), zero, chunk(2, 20), chunk(3, 20), chunk(2, 20)],
  };

  it("counts zero runs and chunks the store has as held, of the version's size", () => {
    const nothing = versionHoldings(manifest, [chunk(1, 20), chunk(2, 20), chunk(3, 20)]);
    expect([nothing.bytesHeld, nothing.bytesTotal, nothing.chunksHeld, nothing.chunksTotal]).toEqual([
      20, 100, 1, 5,
    ]);
    // Resumed with a and b stored by an earlier attempt (or shared with another image).
    const resumed = versionHoldings(manifest, [chunk(3, 20)]);
    expect([resumed.bytesHeld, resumed.bytesTotal]).toEqual([80, 100]);
    expect(versionHoldings(manifest, []).bytesHeld).toBe(100);
  });

  it("a chunk that arrives fills every entry using it, once, and never passes the total", () => {
    const holdings = versionHoldings(manifest, [chunk(1, 20), chunk(2, 20), chunk(3, 20)]);
    chunkArrived(holdings, digestOf(2));
    expect([holdings.bytesHeld, holdings.chunksHeld]).toEqual([60, 3]);
    chunkArrived(holdings, digestOf(2)); // counted already
    chunkArrived(holdings, digestOf(7)); // not the version's
    expect(holdings.bytesHeld).toBe(60);
    chunkArrived(holdings, digestOf(1));
    chunkArrived(holdings, digestOf(3));
    expect([holdings.bytesHeld, holdings.chunksHeld]).toEqual([100, 5]);
  });

  it("counts a chunk by the first position its receiver names, and nothing for a position of another chunk", () => {
    const holdings = versionHoldings(manifest, [chunk(1, 20), chunk(2, 20), chunk(3, 20)]);
    chunkArrived(holdings, digestOf(2), 3); // position 3 holds chunk 3
    expect(holdings.bytesHeld).toBe(20);
    chunkArrived(holdings, digestOf(2), 2);
    expect([holdings.bytesHeld, holdings.chunksHeld]).toEqual([60, 3]);
    chunkArrived(holdings, digestOf(2), 2); // counted already
    expect(holdings.bytesHeld).toBe(60);
  });

  it("what is left to ask for is what was missing and has not arrived, in the order it was asked", () => {
    const missing = [chunk(1, 20), chunk(2, 20), chunk(3, 20)];
    const holdings = versionHoldings(manifest, missing);
    expect(notArrived(holdings)).toEqual(missing);
    chunkArrived(holdings, digestOf(2));
    expect(notArrived(holdings)).toEqual([chunk(1, 20), chunk(3, 20)]);
    chunkArrived(holdings, digestOf(1));
    chunkArrived(holdings, digestOf(3));
    expect(notArrived(holdings)).toEqual([]);
    // A chunk the version does not use is never asked for.
    expect(notArrived(versionHoldings(manifest, [chunk(7, 20)]))).toEqual([]);
  });

  it("a zero run is held even when a stored chunk of zeros shares its digest", () => {
    const zeros: ChunkRef = { ...zero, zero: false };
    const holdings = versionHoldings({ size: 40, digest: digestOf(98), chunks: [zero, zeros] }, [zeros]);
    expect(holdings.bytesHeld).toBe(20);
    chunkArrived(holdings, zero.digest);
    expect(holdings.bytesHeld).toBe(40);
  });
});

describe("a pull interrupted and resumed", () => {
  let fixture: ProxiedSource;
  let dir: ProxiedSource["dir"];
  let keys: TestKeys;
  let proxy: TransferProxy;
  const image = seededBytes(8 << 20, 77);
  image.fill(0, 6 << 20, 7 << 20);
  const digest = sha256Hex(image);

  beforeAll(async () => {
    fixture = await startProxiedSource("pull-progress", "img-r", image);
    ({ dir, keys, proxy } = fixture);
  });
  afterAll(() => fixture.close());

  /** A pull of the whole image from the proxied source, reported at every chunk. */
  const pullOf = async (store: ImageStore) => ({
    store,
    imageId: "img-r",
    version: 1,
    expectedDigest: digest,
    expectedSize: image.length,
    sources: [{ url: proxy.url, token: await keys.token("img-r", 1, "dc-a", "read") }],
    reportIntervalMs: 0,
  });

  it("reports 80/100 then climbs to 100/100, never more done than total, and so does its operation", async () => {
    const store = await ImageStore.open(join(dir.path, "target"));
    const reports: ReplicaReport[] = [];
    const reporter = {
      reportReplica: async (report: ReplicaReport) => {
        reports.push({ ...report });
      },
    };
    const options = { ...(await pullOf(store)), reporter, batchBytes: 512 << 10 };

    // The first pull stops once 3 MiB have arrived.
    proxy.bytesPerSecond = 4 << 20;
    const stop = new AbortController();
    await expect(
      pullImageVersion({
        ...options,
        attempts: 1,
        signal: stop.signal,
        onProgress: (progress) => {
          if (progress.bytesReceived >= 3 << 20) stop.abort();
        },
      }),
    ).rejects.toThrow();
    const interrupted = reports.length;
    expect(reports.at(-1)?.state).toBe("failed");
    await store.drainWrites("img-r", 1);

    // Resumed: it starts from what the store holds and ends at the whole version.
    proxy.bytesPerSecond = undefined;
    const seen: PullProgress[] = [];
    const record = await pullImageVersion({
      ...options,
      onProgress: (progress) => seen.push({ ...progress }),
    });
    expect(record.state).toBe("available");
    const resumed = reports.slice(interrupted);
    const withBytes = reports.filter((r) => r.bytesDone !== undefined);
    for (const report of withBytes) {
      expect(report.bytesTotal).toBe(image.length);
      expect(report.bytesDone).toBeLessThanOrEqual(image.length);
    }
    const firstPull = withBytes.filter((r) => reports.indexOf(r) < interrupted);
    const start = resumed[0] as ReplicaReport;
    expect(start).toMatchObject({ state: "transferring", bytesTotal: image.length, bytesReceived: 0 });
    // What the first pull stored (3 MiB and more) and the zero run are held: not 0/missing.
    expect(start.bytesDone).toBeGreaterThanOrEqual((3 << 20) + (1 << 20) - (256 << 10));
    expect(start.bytesDone).toBeGreaterThanOrEqual(firstPull.at(-1)?.bytesDone as number);
    expect(resumed.at(-1)).toMatchObject({
      state: "available",
      bytesDone: image.length,
      bytesTotal: image.length,
    });
    // Only what was missing crossed: held at the start plus received is the whole version.
    const received = resumed.at(-1)?.bytesReceived as number;
    expect((start.bytesDone as number) + received).toBe(image.length);
    const done = seen.map((p) => p.bytesDone);
    expect(done).toEqual([...done].sort((a, b) => a - b));
    expect(seen.at(-1)).toMatchObject({
      bytesDone: image.length,
      bytesTotal: image.length,
      bytesReceived: received,
    });

    // The control plane records each report and the operation merges it: never more done than total.
    let operation: OperationProgress = {
      step: "transferring-image",
      bytes_done: 0,
      bytes_total: image.length,
      children: [],
    };
    for (const report of reports) {
      const stored = replicaBytes(
        {
          state: report.state,
          ...(report.bytesDone !== undefined ? { bytes_done: report.bytesDone } : {}),
          ...(report.bytesTotal !== undefined ? { bytes_total: report.bytesTotal } : {}),
          ...(report.bytesReceived !== undefined ? { bytes_received: report.bytesReceived } : {}),
        },
        image.length,
      );
      if (stored.bytesDone === undefined) continue;
      expect(stored.bytesDone).toBeLessThanOrEqual(stored.bytesTotal as number);
      const before = operation.bytes_done;
      const bytes = { bytes_done: stored.bytesDone, bytes_total: stored.bytesTotal ?? null };
      operation = mergeProgress(operation, {
        ...bytes,
        children: [{ datacenter: "dc-b", step: "transferring-image", ...bytes }],
      });
      expect(operation.bytes_done).toBeGreaterThanOrEqual(before);
      expect(operation.bytes_done).toBeLessThanOrEqual(operation.bytes_total as number);
      expect(operation.children[0]?.bytes_done).toBeLessThanOrEqual(
        operation.children[0]?.bytes_total as number,
      );
    }
    expect([operation.bytes_done, operation.bytes_total]).toEqual([image.length, image.length]);
    await store.close();
  });

  it("reports nothing of an interrupted pull after it has failed", async () => {
    // Chunks are checked off the receiving thread: those still being checked when the request
    // ends must be reported before the pull fails, not among the next pull's reports.
    const store = await ImageStore.open(join(dir.path, "target-late"));
    let failed = false;
    const late: PullProgress[] = [];
    const stop = new AbortController();
    proxy.bytesPerSecond = 4 << 20;
    await expect(
      pullImageVersion({
        ...(await pullOf(store)),
        attempts: 1,
        signal: stop.signal,
        onProgress: (progress) => {
          if (failed) late.push({ ...progress });
          if (progress.bytesReceived >= 1 << 20) stop.abort();
        },
      }),
    ).rejects.toThrow();
    failed = true;
    proxy.bytesPerSecond = undefined;
    await store.drainWrites("img-r", 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(late).toEqual([]);
    await store.close();
  });
});
