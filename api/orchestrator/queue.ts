// The operations' job queues on pg-boss. The `operations` table stays the user-visible record
// (state, step, progress, error, result); pg-boss schedules the work: one job per operation,
// whose attempts are the operation's attempts (retries with backoff), a heartbeat that lets
// another process (or the restarted one) take over the job of a control plane that died, and
// a dead-letter queue for a job whose last attempt failed.
//
// One queue per operation kind, so that a control plane only takes the kinds it has a handler
// for, and a job of a kind nobody handles yet waits for a process that does.
import { sql } from "drizzle-orm";
import { fromDrizzle, type PgBoss, type Queue } from "pg-boss";
import { OPERATION_KINDS, type Operation, TERMINAL_OPERATION_STATES } from "../../schemas/operations.ts";
import type { CatalogDb } from "../catalog/db.ts";
import { insertOperation } from "../catalog/operations.ts";
import type { operations } from "../catalog/schema.ts";
import type { Services } from "../env.ts";

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

type OperationRow = typeof operations.$inferSelect;

/**
 * Schedules an operation's job in the transaction that inserted the operation, so that either
 * both exist or neither does. An operation that starts out already ended (nothing to do) gets no
 * job. Call inside `db.transaction(async (tx) => …)` with that `tx`.
 */
export async function enqueueOperation(jobs: PgBoss, tx: CatalogDb, operation: OperationRow): Promise<void> {
  if (TERMINAL_OPERATION_STATES.includes(operation.state)) return;
  const job: OperationJob = { operationId: operation.id };
  await jobs.send(operationQueueName(operation.kind as Operation["kind"]), job, {
    singletonKey: operation.id,
    db: fromDrizzle(tx as Parameters<typeof fromDrizzle>[0], sql),
  });
}

/**
 * Records an operation and schedules its job, atomically (a savepoint when `db` is already a
 * transaction, which is how routes call it: inside the transaction that makes the change).
 */
export async function startOperation(
  db: CatalogDb,
  services: Pick<Services, "catalog">,
  fields: Parameters<typeof insertOperation>[1],
): Promise<OperationRow> {
  return db.transaction(async (tx) => {
    const operation = await insertOperation(tx, fields);
    await enqueueOperation(services.catalog.jobs, tx, operation);
    return operation;
  });
}
