// The plain decisions behind the fault tests and datacenter-down handling: the heartbeat
// thresholds, the bounded wait for a down datacenter, and what counts as a chunk sent again.
import { describe, expect, it } from "vitest";
import { datacenterStatus, heartbeatThresholds } from "../../api/catalog/datacenter-status.ts";
import {
  decideReask,
  noteReasked,
  REASK_INTERVAL_MS,
  type ReaskLog,
  START_RETRIES,
} from "../../api/orchestrator/instance-recovery.ts";
import {
  DatacenterDownError,
  datacenterWaitMs,
  waitWhileDatacenterDown,
} from "../../api/orchestrator/manager-client.ts";
import type { DatacenterStatus } from "../../schemas/regions.ts";
import type { ChunkRequest } from "./chunk-counter.ts";
import { chunksSentAgain, seededRandom } from "./trials.ts";

describe("heartbeat thresholds", () => {
  it("are 30 s / 90 s by default and follow GLOBALVM_DATACENTER_DOWN_AFTER_MS", () => {
    expect(heartbeatThresholds({})).toEqual({ degradedAfterMs: 30_000, downAfterMs: 90_000 });
    const short = heartbeatThresholds({ GLOBALVM_DATACENTER_DOWN_AFTER_MS: "3000" });
    expect(short).toEqual({ degradedAfterMs: 1000, downAfterMs: 3000 });
    const now = new Date("2026-11-30T12:00:00Z");
    const ago = (ms: number) => new Date(now.getTime() - ms);
    expect(datacenterStatus(ago(999), now, short)).toBe("up");
    expect(datacenterStatus(ago(1000), now, short)).toBe("degraded");
    expect(datacenterStatus(ago(3000), now, short)).toBe("down");
  });

  it("refuse a timeout that is not a number of milliseconds, naming the variable", () => {
    expect(() => heartbeatThresholds({ GLOBALVM_DATACENTER_DOWN_AFTER_MS: "3s" })).toThrow(
      /GLOBALVM_DATACENTER_DOWN_AFTER_MS/,
    );
    expect(() => datacenterWaitMs({ GLOBALVM_DATACENTER_WAIT_MS: "-1" })).toThrow(
      /GLOBALVM_DATACENTER_WAIT_MS/,
    );
    expect(datacenterWaitMs({})).toBe(300_000);
  });
});

describe("waitWhileDatacenterDown", () => {
  /** A clock that only moves when the wait sleeps, and a status that follows it. */
  function fakeDatacenter(downUntilMs: number) {
    let now = 0;
    const sleeps: number[] = [];
    const realNow = Date.now;
    const start = realNow();
    Date.now = () => start + now;
    return {
      status: async (): Promise<DatacenterStatus> => (now < downUntilMs ? "down" : "up"),
      sleep: async (ms: number) => {
        sleeps.push(ms);
        now += ms;
      },
      sleeps,
      restore: () => {
        Date.now = realNow;
      },
    };
  }

  it("returns at once when the datacenter is not down", async () => {
    const dc = fakeDatacenter(0);
    try {
      await waitWhileDatacenterDown("us-east-a", { status: dc.status, sleep: dc.sleep, waitMs: 1000 });
      expect(dc.sleeps).toEqual([]);
    } finally {
      dc.restore();
    }
  });

  it("waits while it is down and returns when it is back", async () => {
    const dc = fakeDatacenter(1200);
    try {
      await waitWhileDatacenterDown("us-east-a", { status: dc.status, sleep: dc.sleep, waitMs: 5000 });
      expect(dc.sleeps).toEqual([500, 500, 500]);
    } finally {
      dc.restore();
    }
  });

  it("gives up after the bounded wait with an error naming the datacenter", async () => {
    const dc = fakeDatacenter(Number.POSITIVE_INFINITY);
    try {
      const waiting = waitWhileDatacenterDown("us-east-a", {
        status: dc.status,
        sleep: dc.sleep,
        waitMs: 1200,
      });
      await expect(waiting).rejects.toBeInstanceOf(DatacenterDownError);
      await expect(waiting).rejects.toThrow(/us-east-a stayed down/);
      expect(dc.sleeps).toEqual([500, 500, 200]);
    } finally {
      dc.restore();
    }
  });
});

describe("chunksSentAgain", () => {
  const request = (at: number, digests: string[], completed = true): ChunkRequest => ({
    imageId: "img",
    digests,
    completed,
    at,
    endedAt: at + 1,
  });

  it("flags a chunk asked again after a complete answer", () => {
    expect(chunksSentAgain([request(1, ["a", "b"]), request(5, ["b", "c"])])).toEqual(["b"]);
  });

  it("allows asking again what an answer cut mid-stream did not deliver", () => {
    expect(chunksSentAgain([request(1, ["a", "b"], false), request(5, ["a", "b"])])).toEqual([]);
  });

  it("with a target killed, flags what it had stored and allows what it had not sealed", () => {
    const kill = { at: 3, storedAtKill: new Set(["a"]) };
    expect(chunksSentAgain([request(1, ["a", "b"]), request(5, ["b"])], kill)).toEqual([]);
    expect(chunksSentAgain([request(1, ["a", "b"]), request(5, ["a", "b"])], kill)).toEqual(["a"]);
  });
});

describe("seededRandom", () => {
  it("replays the same sequence from the same seed", () => {
    const a = seededRandom(42);
    const b = seededRandom(42);
    const first = [a(), a(), a()];
    expect([b(), b(), b()]).toEqual(first);
    expect(first.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(seededRandom(43)()).not.toBe(first[0]);
  });
});

describe("decideReask", () => {
  const row = (state: string, stateReason: string | null = null) => ({ id: "i1", state, stateReason });

  it("asks again at once for an unknown instance, then not before the interval", () => {
    const log: ReaskLog = new Map();
    expect(decideReask([row("unknown")], log, 0)).toEqual({ reask: ["i1"], final: undefined });
    noteReasked(log, [row("unknown")], ["i1"], 0);
    expect(decideReask([row("unknown")], log, REASK_INTERVAL_MS - 1).reask).toEqual([]);
    expect(decideReask([row("unknown")], log, REASK_INTERVAL_MS).reask).toEqual(["i1"]);
    expect(decideReask([row("ready"), row("transferring-image")], log, 0)).toEqual({
      reask: [],
      final: undefined,
    });
  });

  it("retries a failed start a bounded number of times, then the failure is final", () => {
    const log: ReaskLog = new Map();
    const failed = row("failed", "could not start: PULL_FAILED no source holds img version 1");
    let now = 0;
    for (let attempt = 0; attempt < START_RETRIES; attempt++) {
      expect(decideReask([failed], log, now)).toEqual({ reask: ["i1"], final: undefined });
      noteReasked(log, [failed], ["i1"], now);
      // Before the manager's next report the row still says failed: not final yet.
      expect(decideReask([failed], log, now + 1)).toEqual({ reask: [], final: undefined });
      now += REASK_INTERVAL_MS;
    }
    expect(decideReask([failed], log, now).final).toBe(failed);
  });

  it("does not retry a guest that failed after it ran", () => {
    const crashed = row("failed", "qemu exited with status 1");
    expect(decideReask([crashed], new Map(), 0)).toEqual({ reask: [], final: crashed });
  });
});
