// The runner's plain decisions: how a failed attempt ends, and how progress merges.
import { describe, expect, it } from "vitest";
import {
  attemptOutcome,
  attemptToken,
  CancelledError,
  mergeProgress,
  PermanentError,
} from "../../api/orchestrator/runner.ts";

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
