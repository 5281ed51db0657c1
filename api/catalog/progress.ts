// Bytes that add up: a replica's and an operation's `bytes_done` describe the whole image
// version (what the datacenter holds of it, chunks it had before the pull included) and
// never exceed `bytes_total`, whatever a manager reports and whatever an operation recorded
// before this rule.
import type { ReplicaReport } from "../../schemas/managers.ts";
import type { OperationProgress } from "../../schemas/operations.ts";

/** `done`, never past `total` (an unknown total bounds nothing). */
export function doneWithin(done: number, total: number | null): number {
  return total === null ? Math.max(0, done) : Math.max(0, Math.min(done, total));
}

/** The progress as shown: every `bytes_done` within its `bytes_total`. */
export function boundedProgress(progress: OperationProgress): OperationProgress {
  return {
    ...progress,
    bytes_done: doneWithin(progress.bytes_done, progress.bytes_total),
    children: progress.children.map((child) => ({
      ...child,
      bytes_done: doneWithin(child.bytes_done, child.bytes_total),
    })),
  };
}

/** The bytes columns of a replica row a report sets (none: the row keeps what it has). */
export interface ReplicaBytes {
  bytesDone?: number;
  bytesTotal?: number;
  bytesReceived?: number;
}

/**
 * What a manager's report of its copy of a version (of `size` bytes) records, in the
 * version's terms: the total is the size, and done (what the datacenter holds) never more.
 * An available copy holds all of it. A manager that counts only what was missing when its
 * pull began (as managers did before bytes_received; a resumed pull then reported 20/20
 * after 80/100) has its figures taken as the rest of the version: what it did not count was
 * held already, and its done is what its pull received.
 */
export function replicaBytes(
  report: Pick<ReplicaReport, "state" | "bytes_done" | "bytes_total" | "bytes_received">,
  size: number,
): ReplicaBytes {
  const received = report.bytes_received ?? report.bytes_done;
  const out: ReplicaBytes = received === undefined ? {} : { bytesReceived: received };
  if (report.state === "available") return { ...out, bytesDone: size, bytesTotal: size };
  if (report.bytes_done === undefined) {
    return report.bytes_total === undefined ? out : { ...out, bytesTotal: size };
  }
  const counted = report.bytes_total ?? size;
  const heldBefore = counted < size ? size - counted : 0;
  return {
    ...out,
    bytesDone: doneWithin(heldBefore + Math.min(report.bytes_done, counted), size),
    bytesTotal: size,
  };
}
