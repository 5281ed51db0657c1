// Runs the catalog's operations on pg-boss (see queue.ts): each operation is one job in the
// queue of its kind, enqueued in the transaction that recorded the operation. pg-boss claims a
// job in one process at a time (SKIP LOCKED), retries a failed attempt with backoff, and hands
// the job of a control plane that died (its heartbeat stopped) to another process or to the
// restarted one. Handlers are idempotent and resume from what the catalog already records.
//
// What is still written by hand, and why:
// - The `operations` row is the user-visible record, so each attempt writes its state, progress,
//   error and result there. Those writes are fenced by the attempt (`lease_owner` holds the job
//   ID and retry count): an attempt that pg-boss already gave to another worker (its heartbeat
//   was missed) can no longer write, and stops at its next write.
// - A job that pg-boss gave up on while no handler was running (the process died during the last
//   attempt) lands in the dead-letter queue, whose worker records the operation as failed.
// - On the embedded PGlite catalog only one process can hold the database, so at start every job
//   still marked active belongs to a process that is gone: it is failed over to its next attempt
//   at once instead of after the heartbeat timeout.

import { createHash } from "node:crypto";
import { and, eq, inArray } from "drizzle-orm";
import type { JobWithMetadata, PgBoss } from "pg-boss";
import { newSpanId, type TraceScope, withTrace } from "../../common/trace-context.ts";
import type { Operation, OperationProgress } from "../../schemas/operations.ts";
import {
  DEAD_OPERATIONS_QUEUE,
  type OperationJob,
  operationQueueName,
  type RetryPolicy,
  retrySettings,
} from "../catalog/job-queues.ts";
import { failRunningOperation } from "../catalog/operations.ts";
import { doneWithin } from "../catalog/progress.ts";
import { operations } from "../catalog/schema.ts";
import type { Services } from "../env.ts";

export { MAX_ATTEMPTS } from "../catalog/job-queues.ts";

type OperationRow = typeof operations.$inferSelect;

/**
 * The scope an attempt runs in: the trace of the request that created the operation, a span of
 * its own, and the operation's ID. An operation recorded before traces were gets one derived
 * from its ID, the same for each of its attempts.
 */
export function operationTrace(operation: { id: string; traceId: string | null }): TraceScope {
  return {
    traceId: operation.traceId ?? createHash("sha256").update(operation.id).digest("hex").slice(0, 32),
    spanId: newSpanId(),
    flags: 1,
    operationId: operation.id,
  };
}

/** A failure that will not go away by retrying (bad request, image gone, guest crashed). */
export class PermanentError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

export class CancelledError extends Error {}

export interface OperationContext {
  /** The operation as this attempt found it: `attempts` is this attempt's number, from 1. */
  operation: OperationRow;
  services: Services;
  signal: AbortSignal;
  /** Records progress; bytes never go backwards, per datacenter too. */
  progress(update: Partial<OperationProgress>): Promise<void>;
  /** Throws CancelledError when a cancel was requested. */
  checkCancelled(): Promise<void>;
  sleep(ms: number): Promise<void>;
}

export type OperationHandler = (context: OperationContext) => Promise<Record<string, unknown>>;

export type OperationHandlers = Partial<Record<Operation["kind"], OperationHandler>>;

/**
 * Progress merged so that bytes and per-datacenter bytes only grow, and never past their
 * totals (a total left out keeps the one recorded).
 */
export function mergeProgress(
  current: OperationProgress,
  update: Partial<OperationProgress>,
): OperationProgress {
  const children = [...current.children];
  for (const child of update.children ?? []) {
    const at = children.findIndex((c) => c.datacenter === child.datacenter);
    const previous = at === -1 ? undefined : children[at];
    const total = child.bytes_total ?? previous?.bytes_total ?? null;
    const done = Math.max(previous?.bytes_done ?? 0, child.bytes_done);
    const merged = { ...child, bytes_done: doneWithin(done, total), bytes_total: total };
    if (at === -1) children.push(merged);
    else children[at] = merged;
  }
  const total = update.bytes_total ?? current.bytes_total;
  return {
    step: update.step ?? current.step,
    bytes_done: doneWithin(Math.max(current.bytes_done, update.bytes_done ?? 0), total),
    bytes_total: total,
    children,
  };
}

/** What an attempt that threw leaves in the operation. */
export type AttemptOutcome =
  | { state: "cancelled" | "failed"; error: { code: string; message: string } }
  | { state: "retrying"; error: { code: "retrying"; message: string } };

export function gaveUpMessage(attempts: number, reason: string): string {
  return `gave up after ${attempts} attempt${attempts === 1 ? "" : "s"}: ${reason}`;
}

/** Decides how a failed attempt ends: cancelled, failed for good, or retried by pg-boss. */
export function attemptOutcome(error: unknown, attempt: number, maxAttempts: number): AttemptOutcome {
  if (error instanceof CancelledError)
    return { state: "cancelled", error: { code: "cancelled", message: error.message } };
  if (error instanceof PermanentError)
    return { state: "failed", error: { code: error.code, message: error.message } };
  const message = error instanceof Error ? error.message : String(error);
  if (attempt >= maxAttempts) {
    return {
      state: "failed",
      error: { code: "gave_up", message: gaveUpMessage(attempt, message) },
    };
  }
  return { state: "retrying", error: { code: "retrying", message: `attempt ${attempt} failed: ${message}` } };
}

/** The fencing token of one attempt of one job. */
export function attemptToken(job: { id: string; retryCount: number }): string {
  return `${job.id}:${job.retryCount}`;
}

class AttemptSuperseded extends Error {}

export interface RunnerOptions {
  services: Services;
  handlers: OperationHandlers;
  /** Operations of each kind this process runs at once (pg-boss workers per queue). */
  concurrency?: number;
  /** Changes the queues' retry policy (for jobs enqueued from now on); default: as created. */
  retry?: RetryPolicy;
  log?: (line: string) => void;
}

/**
 * How often an idle worker asks for a job when no notification woke it: LISTEN/NOTIFY starts an
 * enqueued operation at once; the poll is the backstop (and what picks up retries when their
 * backoff has passed). pg-boss's minimum is 0.5 s.
 */
const POLLING_INTERVAL_SECONDS = 0.5;
const NOTIFY_POLLING_INTERVAL_SECONDS = 3;

export class OperationRunner {
  readonly #options: RunnerOptions;
  readonly #stop = new AbortController();
  readonly #queues: string[] = [];

  constructor(options: RunnerOptions) {
    this.#options = options;
  }

  get #jobs(): PgBoss {
    return this.#options.services.catalog.jobs;
  }

  async start(): Promise<void> {
    const { catalog } = this.#options.services;
    const work = {
      pollingIntervalSeconds: POLLING_INTERVAL_SECONDS,
      notifyPollingIntervalSeconds: NOTIFY_POLLING_INTERVAL_SECONDS,
      includeMetadata: true,
    } as const;
    for (const [kind, handler] of Object.entries(this.#options.handlers)) {
      if (!handler) continue;
      const queue = operationQueueName(kind as Operation["kind"]);
      if (this.#options.retry) await this.#jobs.updateQueue(queue, retrySettings(this.#options.retry));
      if (catalog.kind === "pglite") await this.#failOverDeadAttempts(queue);
      const options = { ...work, localConcurrency: this.#options.concurrency ?? 8 } as const;
      await this.#jobs.work<OperationJob, void, typeof options>(queue, options, async ([job]) => {
        if (job) await this.#attempt(handler, job);
      });
      this.#queues.push(queue);
    }
    await this.#jobs.work<OperationJob, void, typeof work>(DEAD_OPERATIONS_QUEUE, work, async ([job]) => {
      if (job) await this.#recordGaveUp(job);
    });
    this.#queues.push(DEAD_OPERATIONS_QUEUE);
  }

  async stop(): Promise<void> {
    this.#stop.abort(new Error("the control plane is stopping"));
    // A handler interrupted here fails its attempt; pg-boss retries it, here or elsewhere.
    await Promise.allSettled(this.#queues.map((queue) => this.#jobs.offWork(queue, { wait: true })));
  }

  /** PGlite only: the directory lock says no other process is alive to hold these jobs. */
  async #failOverDeadAttempts(queue: string) {
    const active = (await this.#jobs.findJobs(queue)).filter((job) => job.state === "active");
    if (active.length === 0) return;
    this.#log(`[INFO] resuming ${active.length} operation(s) left running by a stopped control plane`);
    await this.#jobs.fail(
      queue,
      active.map((job) => ({ id: job.id, retryCount: job.retryCount })),
      { message: "the control plane running it stopped" },
    );
  }

  async #attempt(handler: OperationHandler, job: JobWithMetadata<OperationJob>): Promise<void> {
    const { db, now } = this.#options.services;
    const id = job.data.operationId;
    const token = attemptToken(job);
    const attempt = job.retryCount + 1;
    const [claimed] = await db
      .update(operations)
      .set({ state: "running", leaseOwner: token, attempts: attempt, updatedAt: now() })
      .where(and(eq(operations.id, id), inArray(operations.state, ["pending", "running"])))
      .returning();
    // Ended already (cancelled while pending, or finished by an earlier attempt): nothing to do.
    if (!claimed) return;
    // The attempt's log lines and manager requests carry the trace of the request that created it.
    await withTrace(operationTrace(claimed), () => this.#run(handler, job, claimed, token, attempt));
  }

  async #run(
    handler: OperationHandler,
    job: JobWithMetadata<OperationJob>,
    claimed: OperationRow,
    token: string,
    attempt: number,
  ): Promise<void> {
    const { services } = this.#options;
    const { db, now, operationEvents } = services;
    const id = claimed.id;
    this.#log(`[INFO] ${claimed.kind} ${id}: attempt ${attempt} started`);
    operationEvents.changed(id);
    if (attempt === 1) services.metrics.operationStarted(claimed.kind);

    const superseded = new AbortController();
    const signal = AbortSignal.any([this.#stop.signal, job.signal, superseded.signal]);
    const mine = and(eq(operations.id, id), eq(operations.leaseOwner, token));
    let current = claimed;
    const write = async (fields: Partial<typeof operations.$inferInsert>) => {
      const [row] = await db
        .update(operations)
        .set({ ...fields, updatedAt: now() })
        .where(mine)
        .returning();
      if (!row) {
        superseded.abort(new AttemptSuperseded(`attempt ${attempt} of ${id} was handed to another worker`));
        throw signal.reason;
      }
      current = row;
      operationEvents.changed(id);
    };
    const context: OperationContext = {
      operation: claimed,
      services,
      signal,
      progress: (update) => write({ progress: mergeProgress(current.progress, update) }),
      checkCancelled: async () => {
        const [row] = await db
          .select({ cancel: operations.cancelRequested })
          .from(operations)
          .where(eq(operations.id, id));
        if (row?.cancel) throw new CancelledError("cancelled by request");
      },
      sleep: (ms) =>
        new Promise((resolve, reject) => {
          if (signal.aborted) return reject(signal.reason);
          const onAbort = () => {
            clearTimeout(timer);
            reject(signal.reason);
          };
          const timer = setTimeout(() => {
            signal.removeEventListener("abort", onAbort);
            resolve();
          }, ms);
          signal.addEventListener("abort", onAbort, { once: true });
        }),
    };

    let result: Record<string, unknown>;
    try {
      await context.checkCancelled();
      result = await handler(context);
    } catch (error) {
      // Stopping, or the attempt is another worker's now: pg-boss retries or already did.
      if (signal.aborted) throw signal.reason;
      // The job's own retry limit, as pg-boss will apply it.
      const outcome = attemptOutcome(error, attempt, job.retryLimit + 1);
      if (outcome.state === "retrying") {
        this.#log(`[INFO] ${claimed.kind} ${id}: ${outcome.error.message}; retrying with backoff`);
        await write({ error: outcome.error });
        services.metrics.operationRetrying(claimed.kind);
        throw error; // pg-boss schedules the next attempt after its backoff
      }
      this.#log(
        `[${outcome.state === "failed" ? "WARN" : "INFO"}] ${claimed.kind} ${id}: ${outcome.state} (${outcome.error.code}): ${outcome.error.message}`,
      );
      await write({ state: outcome.state, error: outcome.error });
      services.metrics.operationFinished(claimed.kind, outcome.state, claimed.createdAt, now());
      return;
    }
    await write({
      state: "succeeded",
      result,
      error: null,
      progress: mergeProgress(current.progress, { step: "done" }),
    });
    this.#log(`[INFO] ${claimed.kind} ${id}: succeeded`);
    services.metrics.operationFinished(claimed.kind, "succeeded", claimed.createdAt, now());
  }

  /** A job whose last attempt died with its process: the operation fails with what pg-boss saw. */
  async #recordGaveUp(job: JobWithMetadata<OperationJob>) {
    const { db, now, operationEvents, metrics } = this.#options.services;
    const id = job.data.operationId;
    const [row] = await db
      .select({
        attempts: operations.attempts,
        kind: operations.kind,
        state: operations.state,
        createdAt: operations.createdAt,
        traceId: operations.traceId,
      })
      .from(operations)
      .where(eq(operations.id, id));
    const output = job.sourceOutput as { message?: string; value?: { message?: string } } | null;
    const reason = output?.message ?? output?.value?.message ?? "its last attempt did not finish";
    if (row && (row.state === "pending" || row.state === "running"))
      withTrace(operationTrace({ id, traceId: row.traceId }), () =>
        this.#log(`[WARN] ${row.kind} ${id}: failed (gave_up): ${reason}`),
      );
    await failRunningOperation(
      db,
      operationEvents,
      id,
      { code: "gave_up", message: gaveUpMessage(row?.attempts ?? 0, reason) },
      now(),
    );
    // Counted once: only an operation still open is failed here.
    if (row && (row.state === "pending" || row.state === "running"))
      metrics.operationFinished(row.kind, "failed", row.createdAt, now());
  }

  #log(line: string) {
    (this.#options.log ?? ((l: string) => console.error(l)))(line);
  }
}
