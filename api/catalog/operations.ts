import { EventEmitter } from "node:events";
import { and, asc, eq, gt, inArray } from "drizzle-orm";
import type { Operation, OperationProgress } from "../../schemas/operations.ts";
import { TERMINAL_OPERATION_STATES } from "../../schemas/operations.ts";
import { newId } from "../ids.ts";
import type { CatalogDb } from "./db.ts";
import { operations } from "./schema.ts";

type OperationRow = typeof operations.$inferSelect;
type Kind = Operation["kind"];

/**
 * Wakes long-polls in this process as soon as an operation changes. Other control-plane
 * processes sharing the database are seen by the poll in waitForOperationChange.
 */
export class OperationEvents extends EventEmitter {
  changed(id: string) {
    this.emit(id);
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
    progress: row.progress,
    error: row.error ?? null,
    result: row.result ?? null,
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
      ...(fields.progress ? { progress: fields.progress } : {}),
    })
    .returning();
  if (!row) throw new Error("insert returned no operation");
  return row;
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
) {
  const conditions = [
    ...(projectId ? [eq(operations.projectId, projectId)] : []),
    ...(after ? [gt(operations.id, after)] : []),
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
 * or when `timeoutMs` runs out. Terminal operations return at once.
 */
export async function waitForOperationChange(
  db: CatalogDb,
  events: OperationEvents,
  seen: OperationRow,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<OperationRow> {
  const deadline = Date.now() + timeoutMs;
  let current = seen;
  while (!TERMINAL_OPERATION_STATES.includes(current.state) && Date.now() < deadline && !signal?.aborted) {
    await new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        events.off(seen.id, wake);
        signal?.removeEventListener("abort", wake);
        resolve();
      };
      // The poll covers changes made by other processes on the same database.
      const timer = setTimeout(wake, Math.min(250, Math.max(0, deadline - Date.now())));
      events.on(seen.id, wake);
      signal?.addEventListener("abort", wake);
    });
    const [row] = await db.select().from(operations).where(eq(operations.id, seen.id)).limit(1);
    if (!row) return current;
    current = row;
    if (row.updatedAt.getTime() !== seen.updatedAt.getTime()) return row;
  }
  return current;
}
