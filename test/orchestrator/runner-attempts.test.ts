// The runner's plain decisions: how a failed attempt ends, and how progress merges.
import { describe, expect, it } from "vitest";
import {
  attemptOutcome,
  attemptToken,
  CancelledError,
  mergeProgress,
  PermanentError,
} from "../../api/orchestrator/runner.ts";
import type { OperationProgress } from "../../schemas/operations.ts";

describe("attemptOutcome", () => {
  it("retries a plain error until the last attempt, then gives up saying how often and why", () => {
    expect(attemptOutcome(new Error("manager unreachable"), 1, 3)).toEqual({
      state: "retrying",
      error: { code: "retrying", message: "attempt 1 failed: manager unreachable" },
    });
    expect(attemptOutcome(new Error("manager unreachable"), 3, 3)).toEqual({
      state: "failed",
      error: { code: "gave_up", message: "gave up after 3 attempts: manager unreachable" },
    });
    expect(attemptOutcome("odd", 1, 1).error.message).toBe("gave up after 1 attempt: odd");
  });

  it("ends at once on a permanent error or a cancel, whatever the attempt", () => {
    expect(attemptOutcome(new PermanentError("image_gone", "image deleted"), 1, 6)).toEqual({
      state: "failed",
      error: { code: "image_gone", message: "image deleted" },
    });
    expect(attemptOutcome(new CancelledError("cancelled by request"), 2, 6)).toEqual({
      state: "cancelled",
      error: { code: "cancelled", message: "cancelled by request" },
    });
  });
});

describe("attemptToken", () => {
  it("differs between attempts of one job", () => {
    expect(attemptToken({ id: "j", retryCount: 0 })).not.toBe(attemptToken({ id: "j", retryCount: 1 }));
  });
});

describe("mergeProgress", () => {
  it("never lets bytes go back, in total or per datacenter", () => {
    const current = {
      step: "transferring-image",
      bytes_done: 500,
      bytes_total: 1000,
      children: [{ datacenter: "us-east-a", step: "transferring-image", bytes_done: 500, bytes_total: 1000 }],
    };
    const merged = mergeProgress(current, {
      bytes_done: 100,
      children: [
        { datacenter: "us-east-a", step: "transferring-image", bytes_done: 200, bytes_total: 1000 },
        { datacenter: "ap-south-a", step: "transferring-image", bytes_done: 50, bytes_total: 1000 },
      ],
    });
    expect(merged.bytes_done).toBe(500);
    expect(merged.step).toBe("transferring-image");
    expect(merged.children.map((c) => [c.datacenter, c.bytes_done])).toEqual([
      ["us-east-a", 500],
      ["ap-south-a", 50],
    ]);
  });
});

describe("mergeProgress with totals", () => {
  const child = (bytes_done: number, bytes_total: number | null) => ({
    datacenter: "us-east-a",
    step: "transferring-image",
    bytes_done,
    bytes_total,
  });

  it("never shows more done than the total, in total or per datacenter (80/100, then 20/20: not 80/20)", () => {
    const current = {
      step: "transferring-image",
      bytes_done: 80,
      bytes_total: 100,
      children: [child(80, 100)],
    };
    const merged = mergeProgress(current, { bytes_done: 20, bytes_total: 20, children: [child(20, 20)] });
    expect([merged.bytes_done, merged.bytes_total]).toEqual([20, 20]);
    expect([merged.children[0]?.bytes_done, merged.children[0]?.bytes_total]).toEqual([20, 20]);
  });

  it("keeps a datacenter's total when an update leaves it out, as for the operation's", () => {
    const current = {
      step: "transferring-image",
      bytes_done: 100,
      bytes_total: 100,
      children: [child(100, 100)],
    };
    const merged = mergeProgress(current, {
      step: "replacing",
      children: [{ ...child(0, null), step: "replacing 1/2" }],
    });
    expect(merged.children).toEqual([
      { datacenter: "us-east-a", step: "replacing 1/2", bytes_done: 100, bytes_total: 100 },
    ]);
    expect([merged.bytes_done, merged.bytes_total]).toEqual([100, 100]);
  });

  it("a resumed pull of the whole version climbs from where it was to its total", () => {
    let progress: OperationProgress = {
      step: "transferring-image",
      bytes_done: 0,
      bytes_total: 100,
      children: [],
    };
    const seen: [number, number | null][] = [];
    for (const [done, total] of [
      [40, 100],
      [80, 100],
      [80, 100],
      [90, 100],
      [100, 100],
    ] as const) {
      progress = mergeProgress(progress, {
        bytes_done: done,
        bytes_total: total,
        children: [child(done, total)],
      });
      seen.push([progress.bytes_done, progress.bytes_total]);
    }
    expect(seen).toEqual([
      [40, 100],
      [80, 100],
      [80, 100],
      [90, 100],
      [100, 100],
    ]);
  });
});
