// Which instances the orchestrator asks their manager for again while it waits for a group to be
// ready. The start is idempotent on the manager, so asking again is always safe; what this
// decides is when it is needed and when a failure is final:
// - `unknown`: the manager restarted before it booted the guest (it held it only in memory), or
//   its datacenter was down; asked again, at most every REASK_INTERVAL_MS.
// - `failed` before the guest ever ran ("could not start: ...", e.g. the image pull found no
//   live source while the source manager restarted): asked again up to START_RETRIES times,
//   REASK_INTERVAL_MS apart, then the failure is final.

export const REASK_INTERVAL_MS = 5_000;
export const START_RETRIES = 5;
const START_FAILURE = "could not start";

export interface InstanceSeen {
  id: string;
  state: string;
  stateReason: string | null;
}

/** Per instance: how many times a failed start was asked again, and when it was last asked. */
export type ReaskLog = Map<string, { failedStarts: number; lastAt: number }>;

export interface ReaskDecision<Row extends InstanceSeen> {
  /** Ask the manager to start these again now. */
  reask: string[];
  /** A failure that stays: the operation fails with it. */
  final: Row | undefined;
}

export function decideReask<Row extends InstanceSeen>(
  rows: readonly Row[],
  log: ReaskLog,
  now: number,
): ReaskDecision<Row> {
  const reask: string[] = [];
  for (const row of rows) {
    const entry = log.get(row.id) ?? { failedStarts: 0, lastAt: Number.NEGATIVE_INFINITY };
    const due = now - entry.lastAt >= REASK_INTERVAL_MS;
    if (row.state === "unknown") {
      if (due) reask.push(row.id);
    } else if (row.state === "failed") {
      const retryable = row.stateReason?.startsWith(START_FAILURE) ?? false;
      // Until the manager's next report, the row still says failed: wait for it before judging.
      if (!retryable || (entry.failedStarts >= START_RETRIES && due)) return { reask: [], final: row };
      if (due && entry.failedStarts < START_RETRIES) reask.push(row.id);
    }
  }
  return { reask, final: undefined };
}

/** Records that `ids` were asked again at `now`. */
export function noteReasked(
  log: ReaskLog,
  rows: readonly InstanceSeen[],
  ids: readonly string[],
  now: number,
) {
  for (const id of ids) {
    const entry = log.get(id) ?? { failedStarts: 0, lastAt: now };
    const row = rows.find((r) => r.id === id);
    log.set(id, { failedStarts: entry.failedStarts + (row?.state === "failed" ? 1 : 0), lastAt: now });
  }
}
