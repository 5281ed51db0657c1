// The operations' job queues on pg-boss. The `operations` table stays the user-visible record
// (state, step, progress, error, result); pg-boss schedules the work: one job per operation,
// whose attempts are the operation's attempts (retries with backoff), a heartbeat that lets
// another process (or the restarted one) take over the job of a control plane that died, and
// a dead-letter queue for a job whose last attempt failed.
//
// One queue per operation kind, so that a control plane only takes the kinds it has a handler
// for, and a job of a kind nobody handles yet waits for a process that does.
//
// The queues live beside the catalog (pg-boss in its own schema of the same database) and are
// created with it by the catalog's migrate(); enqueueOperation in ./operations.ts sends to them.
import type { PgBoss, Queue } from "pg-boss";
import { OPERATION_KINDS, type Operation } from "../../schemas/operations.ts";

/** What an operation's job carries: only the ID, the catalog holds the rest. */
export interface OperationJob {
  operationId: string;
}

export const DEAD_OPERATIONS_QUEUE = "operation-dead-letter";

export function operationQueueName(kind: Operation["kind"]): string {
  return `operation-${kind}`;
}

/** Attempts of one operation before it fails with `gave_up` (pg-boss: retryLimit + 1). */
export const MAX_ATTEMPTS = 6;

export interface RetryPolicy {
  maxAttempts: number;
  /** Backoff after the first failed attempt; doubles (with jitter) up to RETRY_DELAY_MAX_SECONDS. */
  retryDelaySeconds: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { maxAttempts: MAX_ATTEMPTS, retryDelaySeconds: 1 };
export const RETRY_DELAY_MAX_SECONDS = 30;

/** The pg-boss retry settings of an operation queue. */
export function retrySettings(policy: RetryPolicy) {
  return { retryLimit: policy.maxAttempts - 1, retryDelay: policy.retryDelaySeconds, retryBackoff: true };
}

/**
 * How an operation queue keeps its jobs. `exclusive` with the operation ID as singleton key: at
 * most one job per operation is queued or running, in any process. The heartbeat (pg-boss's
 * minimum, 10 s) is what finds a killed control plane's job; the expiry only bounds a handler
 * that hangs while its process lives.
 */
const OPERATION_QUEUE: Omit<Queue, "name"> = {
  policy: "exclusive",
  notify: true,
  heartbeatSeconds: 10,
  expireInSeconds: 6 * 60 * 60,
  deadLetter: DEAD_OPERATIONS_QUEUE,
  ...retrySettings(DEFAULT_RETRY_POLICY),
  retryDelayMax: RETRY_DELAY_MAX_SECONDS,
};

/** No job has this ID: a lookup by it only loads a queue into pg-boss's queue cache. */
const NO_JOB_ID = "00000000-0000-0000-0000-000000000000";

/**
 * Creates the queues if they are missing (on every start: new kinds get theirs), then loads each
 * into pg-boss's queue cache. That cache is read on every send, and a miss is filled with a query
 * on pg-boss's own connection: on PGlite, one connection held by the transaction that is sending,
 * that query would wait for the transaction forever.
 */
export async function createOperationQueues(boss: PgBoss): Promise<void> {
  const existing = new Set((await boss.getQueues()).map((queue) => queue.name));
  if (!existing.has(DEAD_OPERATIONS_QUEUE)) {
    await boss.createQueue(DEAD_OPERATIONS_QUEUE, {
      policy: "standard",
      notify: true,
      retryLimit: 10,
      retryDelay: 1,
    });
  }
  for (const kind of OPERATION_KINDS) {
    const name = operationQueueName(kind);
    if (!existing.has(name)) await boss.createQueue(name, OPERATION_QUEUE);
    await boss.findJobs(name, { id: NO_JOB_ID });
  }
}
