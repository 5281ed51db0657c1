// A datacenter's status from the age of its last heartbeat: a pure decision, beside the
// catalog's datacenter health queries (./datacenter-health.ts) that act on it.
import type { DatacenterStatus } from "../../schemas/regions.ts";

export interface HeartbeatThresholds {
  /** Age of the last heartbeat from which the datacenter is degraded. */
  degradedAfterMs: number;
  /** Age of the last heartbeat from which it is down (its instances turn unknown). */
  downAfterMs: number;
}

/**
 * Heartbeats come every 10 s: three missed is degraded, nine is down. The down timeout is
 * GLOBALVM_DATACENTER_DOWN_AFTER_MS (degraded after a third of it), short in tests.
 */
export function heartbeatThresholds(
  env: Record<string, string | undefined> = process.env,
): HeartbeatThresholds {
  const text = env.GLOBALVM_DATACENTER_DOWN_AFTER_MS;
  if (text === undefined || text === "") return { degradedAfterMs: 30_000, downAfterMs: 90_000 };
  const downAfterMs = Number(text);
  if (!Number.isSafeInteger(downAfterMs) || downAfterMs < 300) {
    throw new Error(
      `GLOBALVM_DATACENTER_DOWN_AFTER_MS must be a whole number of milliseconds ≥ 300, not ${text}`,
    );
  }
  return { degradedAfterMs: Math.round(downAfterMs / 3), downAfterMs };
}

export const HEARTBEAT_THRESHOLDS: HeartbeatThresholds = heartbeatThresholds();

export function datacenterStatus(
  lastHeartbeatAt: Date | null,
  now: Date,
  thresholds: HeartbeatThresholds = HEARTBEAT_THRESHOLDS,
): DatacenterStatus {
  if (!lastHeartbeatAt) return "unknown";
  const age = now.getTime() - lastHeartbeatAt.getTime();
  if (age < thresholds.degradedAfterMs) return "up";
  if (age < thresholds.downAfterMs) return "degraded";
  return "down";
}
