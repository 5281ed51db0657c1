// Runs the catalog's operations durably. An operation is claimed with a lease; the worker
// renews it while it works, so a control plane killed mid-operation leaves a lease that runs
// out and another process (or the restarted one) picks the operation up. Handlers are
// idempotent and resume from what the catalog already records, so a step is never done twice.
//
// This lease queue is a stopgap: pg-boss 12.35.0 was measured to run on PGlite too (its
// fromPglite adapter: schema, SKIP LOCKED fetches, retries with backoff, recovery after
// kill -9), so the operations should move onto it, keeping these handlers as they are.

import { randomUUID } from "node:crypto";
import { and, asc, eq, inArray, isNull, lt, lte, or } from "drizzle-orm";
import type { Operation, OperationProgress } from "../../schemas/operations.ts";
import { operations } from "../catalog/schema.ts";
import type { Services } from "../env.ts";

export const LEASE_MS = 30_000;
export const MAX_ATTEMPTS = 6;

type OperationRow = typeof operations.$inferSelect;

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

/** Backoff after a failed attempt: 1 s, 2 s, 4 s … capped at 30 s. */
export function retryDelayMs(attempt: number): number {
  return Math.min(30_000, 1000 * 2 ** Math.max(0, attempt - 1));
}

/** Progress merged so that bytes and per-datacenter bytes only grow. */
export function mergeProgress(
  current: OperationProgress,
  update: Partial<OperationProgress>,
): OperationProgress {
  const children = [...current.children];
  for (const child of update.children ?? []) {
    const at = children.findIndex((c) => c.datacenter === child.datacenter);
    const previous = at === -1 ? undefined : children[at];
    const merged = { ...child, bytes_done: Math.max(previous?.bytes_done ?? 0, child.bytes_done) };
    if (at === -1) children.push(merged);
    else children[at] = merged;
  }
  return {
    step: update.step ?? current.step,
    bytes_done: Math.max(current.bytes_done, update.bytes_done ?? 0),
    bytes_total: update.bytes_total ?? current.bytes_total,
    children,
  };
}

export interface RunnerOptions {
  services: Services;
  handlers: Partial<Record<Operation["kind"], OperationHandler>>;
  concurrency?: number;
  pollMs?: number;
  log?: (line: string) => void;
}

export class OperationRunner {
  readonly owner = `worker-${randomUUID()}`;
  readonly #options: RunnerOptions;
  readonly #running = new Map<string, Promise<void>>();
  readonly #stop = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #polling = false;

  constructor(options: RunnerOptions) {
    this.#options = options;
  }

  start() {
    const tick = () => {
      void this.poll().finally(() => {
        if (!this.#stop.signal.aborted) this.#timer = setTimeout(tick, this.#options.pollMs ?? 250);
      });
    };
    tick();
  }

  async stop() {
    this.#stop.abort();
    clearTimeout(this.#timer);
    await Promise.allSettled(this.#running.values());
  }

  /** Claims and starts as many operations as there is room for. */
  async poll(): Promise<void> {
    if (this.#polling) return;
    this.#polling = true;
    try {
      while (this.#running.size < (this.#options.concurrency ?? 8) && !this.#stop.signal.aborted) {
        const claimed = await this.#claim();
        if (!claimed) return;
        const run = this.#run(claimed).finally(() => this.#running.delete(claimed.id));
        this.#running.set(claimed.id, run);
      }
    } catch (error) {
      this.#log(`[WARN] claiming operations failed: ${error}`);
    } finally {
      this.#polling = false;
    }
  }

  async #claim(): Promise<OperationRow | undefined> {
    const { db, now } = this.#options.services;
    const kinds = Object.keys(this.#options.handlers) as Operation["kind"][];
    return db.transaction(async (tx) => {
      const at = now();
      const [candidate] = await tx
        .select({ id: operations.id })
        .from(operations)
        .where(
          and(
            inArray(operations.state, ["pending", "running"]),
            inArray(operations.kind, kinds),
            or(isNull(operations.leaseUntil), lt(operations.leaseUntil, at)),
            or(isNull(operations.notBefore), lte(operations.notBefore, at)),
          ),
        )
        .orderBy(asc(operations.id))
        .limit(1)
        .for("update", { skipLocked: true });
      if (!candidate) return undefined;
      const [claimed] = await tx
        .update(operations)
        .set({
          leaseOwner: this.owner,
          leaseUntil: new Date(at.getTime() + LEASE_MS),
          state: "running",
          updatedAt: at,
        })
        .where(eq(operations.id, candidate.id))
        .returning();
      return claimed;
    });
  }

  async #run(claimed: OperationRow): Promise<void> {
    const { services } = this.#options;
    const { db, now, operationEvents } = services;
    const handler = this.#options.handlers[claimed.kind as Operation["kind"]];
    if (!handler) return;
    services.operationEvents.changed(claimed.id);
    const lost = new AbortController();
    const signal = AbortSignal.any([this.#stop.signal, lost.signal]);
    let current = claimed;
    const renew = setInterval(() => {
      void db
        .update(operations)
        .set({ leaseUntil: new Date(now().getTime() + LEASE_MS) })
        .where(and(eq(operations.id, claimed.id), eq(operations.leaseOwner, this.owner)))
        .returning({ id: operations.id })
        .then((rows) => {
          // Another worker took over (our lease ran out): stop, it will finish the work.
          if (rows.length === 0) lost.abort();
        })
        .catch(() => {});
    }, LEASE_MS / 3);

    const mine = and(eq(operations.id, claimed.id), eq(operations.leaseOwner, this.owner));
    const context: OperationContext = {
      operation: claimed,
      services,
      signal,
      progress: async (update) => {
        const progress = mergeProgress(current.progress, update);
        const [row] = await db.update(operations).set({ progress, updatedAt: now() }).where(mine).returning();
        if (row) current = row;
        operationEvents.changed(claimed.id);
      },
      checkCancelled: async () => {
        const [row] = await db
          .select({ cancel: operations.cancelRequested })
          .from(operations)
          .where(eq(operations.id, claimed.id));
        if (row?.cancel) throw new CancelledError("cancelled by request");
      },
      sleep: (ms) =>
        new Promise((resolve, reject) => {
          if (signal.aborted) return reject(signal.reason);
          const timer = setTimeout(resolve, ms);
          const onAbort = () => {
            clearTimeout(timer);
            reject(signal.reason);
          };
          signal.addEventListener("abort", onAbort, { once: true });
        }),
    };

    try {
      await context.checkCancelled();
      const result = await handler(context);
      await this.#finish(claimed.id, {
        state: "succeeded",
        result,
        progress: mergeProgress(current.progress, { step: "done" }),
      });
    } catch (error) {
      if (signal.aborted) return; // shutting down or lease lost: the next claimer resumes
      if (error instanceof CancelledError) {
        await this.#finish(claimed.id, {
          state: "cancelled",
          error: { code: "cancelled", message: error.message },
        });
      } else if (error instanceof PermanentError) {
        await this.#finish(claimed.id, {
          state: "failed",
          error: { code: error.code, message: error.message },
        });
      } else {
        const attempts = claimed.attempts + 1;
        const message = error instanceof Error ? error.message : String(error);
        if (attempts >= MAX_ATTEMPTS) {
          await this.#finish(claimed.id, {
            state: "failed",
            error: { code: "gave_up", message: `gave up after ${attempts} attempts: ${message}` },
          });
        } else {
          this.#log(`[INFO] ${claimed.kind} ${claimed.id} attempt ${attempts} failed, retrying: ${message}`);
          await db
            .update(operations)
            .set({
              attempts,
              leaseOwner: null,
              leaseUntil: null,
              notBefore: new Date(now().getTime() + retryDelayMs(attempts)),
              error: { code: "retrying", message },
              updatedAt: now(),
            })
            .where(mine);
          operationEvents.changed(claimed.id);
        }
      }
    } finally {
      clearInterval(renew);
    }
  }

  async #finish(id: string, fields: Partial<typeof operations.$inferInsert>) {
    const { db, now, operationEvents } = this.#options.services;
    await db
      .update(operations)
      .set({
        ...fields,
        ...(fields.state === "succeeded" ? { error: null } : {}),
        leaseOwner: null,
        leaseUntil: null,
        updatedAt: now(),
      })
      .where(and(eq(operations.id, id), eq(operations.leaseOwner, this.owner)));
    operationEvents.changed(id);
  }

  #log(line: string) {
    (this.#options.log ?? ((l: string) => console.error(l)))(line);
  }
}
