import { and, asc, eq, gt, inArray, notInArray, sql } from "drizzle-orm";
import { fromDrizzle, type PgBoss } from "pg-boss";
import { currentTrace, newTraceId } from "../../common/trace-context.ts";
import type { Operation, OperationProgress } from "../../schemas/operations.ts";
import { TERMINAL_OPERATION_STATES } from "../../schemas/operations.ts";
import { newId } from "../ids.ts";
import type { Catalog, CatalogDb, ChangeFeed } from "./db.ts";
import { type OperationJob, operationQueueName } from "./job-queues.ts";
import { boundedProgress } from "./progress.ts";
import { operations } from "./schema.ts";

type OperationRow = typeof operations.$inferSelect;
type Kind = Operation["kind"];

/** The channel (Postgres LISTEN/NOTIFY) an operation's change is told on, its ID the payload. */
export const OPERATION_CHANNEL = "globalvm_operation_changed";

/**
 * Wakes the long-polls of an operation once per change: at once for a change made in this
 * process, by one notification from the database for one made by another (Postgres; a PGlite
 * catalog has one process). Each waiter then reads the operation once, instead of polling.
 */
export class OperationEvents {
  readonly #waiters = new Map<string, Set<() => void>>();
  readonly #waitsByHolder = new Map<string, number>();
  #feed: ChangeFeed | undefined;

  /** Hears the changes other processes make. */
  async connect(feed: ChangeFeed): Promise<void> {
    this.#feed = feed;
    await feed.listen(OPERATION_CHANNEL, (id) => this.#wake(id));
  }

  changed(id: string): void {
    this.#wake(id);
    this.#feed?.notify(OPERATION_CHANNEL, id).catch(() => {
      // Other processes' waiters still end at their deadline with the operation as it is then.
    });
  }

  /** Calls `wake` on each change of the operation until the returned function is called. */
  subscribe(id: string, wake: () => void): () => void {
    let waiters = this.#waiters.get(id);
    if (!waiters) {
      waiters = new Set();
      this.#waiters.set(id, waiters);
    }
    waiters.add(wake);
    return () => {
      waiters.delete(wake);
      if (waiters.size === 0 && this.#waiters.get(id) === waiters) this.#waiters.delete(id);
    };
  }

  /** Takes one of `max` concurrent waits of `holder` (a token); undefined when all are taken. */
  reserveWait(holder: string, max: number): (() => void) | undefined {
    const held = this.#waitsByHolder.get(holder) ?? 0;
    if (held >= max) return undefined;
    this.#waitsByHolder.set(holder, held + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#waitsByHolder.get(holder) ?? 1) - 1;
      if (left > 0) this.#waitsByHolder.set(holder, left);
      else this.#waitsByHolder.delete(holder);
    };
  }

  #wake(id: string): void {
    for (const wake of [...(this.#waiters.get(id) ?? [])]) wake();
  }
}

export function toOperation(row: OperationRow): Operation {
  return {
    id: row.id,
    project_id: row.projectId,
    kind: row.kind as Kind,
    target: { type: row.targetType as Operation["target"]["type"], id: row.targetId },
    state: row.state as Operation["state"],
    done: TERMINAL_OPERATION_STATES.includes(row.state),
    // Recorded before bytes were bounded, an operation could show more done than its total.
    progress: boundedProgress(row.progress),
    error: row.error ?? null,
    result: row.result ?? null,
    trace_id: row.traceId ?? null,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  };
}

export async function insertOperation(
  db: CatalogDb,
  fields: {
    projectId: string | null;
    kind: Kind;
    target: Operation["target"];
    input?: Record<string, unknown>;
    state?: Operation["state"];
    progress?: OperationProgress;
    /** For an operation recorded done (a repair a datacenter made by itself). */
    result?: Record<string, unknown>;
    /** Default: the trace of the work under way (the request, or the operation that starts this one), else a new one. */
    traceId?: string;
  },
): Promise<OperationRow> {
  const [row] = await db
    .insert(operations)
    .values({
      id: newId("operation"),
      projectId: fields.projectId,
      kind: fields.kind,
      targetType: fields.target.type,
      targetId: fields.target.id,
      input: fields.input ?? {},
      state: fields.state ?? "pending",
      // Work nobody traced (a sweep of the collector) gets a trace of its own: every operation has one.
      traceId: fields.traceId ?? currentTrace()?.traceId ?? newTraceId(),
      ...(fields.progress ? { progress: fields.progress } : {}),
      ...(fields.result ? { result: fields.result } : {}),
    })
    .returning();
  if (!row) throw new Error("insert returned no operation");
  return row;
}

/**
 * A datacenter recreated an instance by itself (autohealing): the group's operations say so,
 * as a `repair-instance` operation recorded done. Once per repair: a manager that sends the
 * report again (its answer lost) finds it recorded.
 */
export async function recordRepair(
  db: CatalogDb,
  repair: {
    projectId: string;
    groupId: string;
    instanceId: string;
    name: string;
    datacenter: string;
    host: string | null;
    reason: string;
    at: string;
  },
): Promise<void> {
  const [seen] = await db
    .select({ id: operations.id })
    .from(operations)
    .where(
      and(
        eq(operations.targetId, repair.groupId),
        eq(operations.kind, "repair-instance"),
        sql`${operations.input}->>'instance_id' = ${repair.instanceId}`,
        sql`${operations.input}->>'at' = ${repair.at}`,
      ),
    )
    .limit(1);
  if (seen) return;
  await insertOperation(db, {
    projectId: repair.projectId,
    kind: "repair-instance",
    target: { type: "vm-group", id: repair.groupId },
    input: { instance_id: repair.instanceId, at: repair.at },
    state: "succeeded",
    progress: { step: "recreated", bytes_done: 0, bytes_total: null, children: [] },
    result: {
      instance: repair.instanceId,
      name: repair.name,
      datacenter: repair.datacenter,
      ...(repair.host ? { host: repair.host } : {}),
      reason: repair.reason,
      repaired_at: repair.at,
    },
  });
}

export async function findOperation(db: CatalogDb, id: string, projectId: string | null) {
  const [row] = await db
    .select()
    .from(operations)
    .where(
      projectId ? and(eq(operations.id, id), eq(operations.projectId, projectId)) : eq(operations.id, id),
    )
    .limit(1);
  return row;
}

export async function listOperations(
  db: CatalogDb,
  projectId: string | null,
  after: string | undefined,
  limit: number,
  filter: { targetId?: string; done?: boolean } = {},
) {
  const conditions = [
    ...(projectId ? [eq(operations.projectId, projectId)] : []),
    ...(after ? [gt(operations.id, after)] : []),
    ...(filter.targetId ? [eq(operations.targetId, filter.targetId)] : []),
    ...(filter.done === undefined
      ? []
      : [
          filter.done
            ? inArray(operations.state, [...TERMINAL_OPERATION_STATES])
            : notInArray(operations.state, [...TERMINAL_OPERATION_STATES]),
        ]),
  ];
  return db
    .select()
    .from(operations)
    .where(and(...conditions))
    .orderBy(asc(operations.id))
    .limit(limit);
}

export async function updateOperation(
  db: CatalogDb,
  events: OperationEvents,
  id: string,
  changes: Partial<{
    state: Operation["state"];
    progress: OperationProgress;
    error: { code: string; message: string } | null;
    result: Record<string, unknown> | null;
    cancelRequested: boolean;
  }>,
  now: Date,
): Promise<OperationRow | undefined> {
  const [row] = await db
    .update(operations)
    .set({ ...changes, updatedAt: now })
    .where(eq(operations.id, id))
    .returning();
  events.changed(id);
  return row;
}

/** Ends an operation as failed unless it already ended (a concurrent report may have won). */
export async function failRunningOperation(
  db: CatalogDb,
  events: OperationEvents,
  id: string,
  error: { code: string; message: string },
  now: Date,
): Promise<void> {
  await db
    .update(operations)
    .set({ state: "failed", error, updatedAt: now })
    .where(and(eq(operations.id, id), inArray(operations.state, ["pending", "running"])));
  events.changed(id);
}

/**
 * Returns the operation as soon as it differs from `seen` (any change of its update time),
 * or when `timeoutMs` runs out. Terminal operations return at once. It reads the operation
 * once when it starts to listen, once per change it hears of, and once at the deadline.
 */
export async function waitForOperationChange(
  db: CatalogDb,
  events: OperationEvents,
  seen: OperationRow,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<OperationRow> {
  if (TERMINAL_OPERATION_STATES.includes(seen.state)) return seen;
  const deadline = Date.now() + timeoutMs;
  let woken = false;
  let resume = () => {};
  const wake = () => {
    woken = true;
    resume();
  };
  const unsubscribe = events.subscribe(seen.id, wake);
  signal?.addEventListener("abort", wake);
  try {
    let current = seen;
    for (;;) {
      // The first read covers a change made between reading `seen` and subscribing.
      const [row] = await db.select().from(operations).where(eq(operations.id, seen.id)).limit(1);
      if (!row) return current;
      current = row;
      if (row.updatedAt.getTime() !== seen.updatedAt.getTime()) return row;
      if (Date.now() >= deadline || signal?.aborted) return row;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(wake, deadline - Date.now());
        resume = () => {
          clearTimeout(timer);
          resolve();
        };
        if (woken) resume();
      });
      woken = false;
    }
  } finally {
    unsubscribe();
    signal?.removeEventListener("abort", wake);
  }
}

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
  services: { catalog: Pick<Catalog, "jobs"> },
  fields: Parameters<typeof insertOperation>[1],
): Promise<OperationRow> {
  return db.transaction(async (tx) => {
    const operation = await insertOperation(tx, fields);
    await enqueueOperation(services.catalog.jobs, tx, operation);
    return operation;
  });
}
