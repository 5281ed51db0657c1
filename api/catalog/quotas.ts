// Per-project quotas: what a project may store and run. An admin sets them per project;
// unset, the defaults below hold. Each check runs in the transaction that makes the change,
// after locking the project's row, so two concurrent requests cannot both slip under a quota.
import { count, eq, sql, sum } from "drizzle-orm";
import type { Problem } from "../../schemas/common.ts";
import { QUOTA_NAMES, type Quotas, type SetQuotas } from "../../schemas/projects.ts";
import { errors } from "../errors.ts";
import type { CatalogDb } from "./db.ts";
import { images, imageVersions, projects, vmGroups } from "./schema.ts";

/** Enough for real use on one site; an admin raises or lowers them per project. */
export const DEFAULT_QUOTAS: Quotas = {
  storage_bytes: 1024 ** 4,
  images: 500,
  instances: 500,
  vcpus: 1000,
};

const COLUMNS = {
  storage_bytes: "quotaStorageBytes",
  images: "quotaImages",
  instances: "quotaInstances",
  vcpus: "quotaVcpus",
} as const satisfies Record<keyof Quotas, keyof typeof projects.$inferSelect>;

export function quotasOf(row: typeof projects.$inferSelect): Quotas {
  const quotas = { ...DEFAULT_QUOTAS };
  for (const name of QUOTA_NAMES) quotas[name] = row[COLUMNS[name]] ?? DEFAULT_QUOTAS[name];
  return quotas;
}

/** The columns an admin's quotas set (null: back to the default; absent: unchanged). */
export function quotaColumns(set: SetQuotas = {}): Partial<typeof projects.$inferInsert> {
  const columns: Partial<typeof projects.$inferInsert> = {};
  for (const name of QUOTA_NAMES) {
    const value = set[name];
    if (value !== undefined) columns[COLUMNS[name]] = value;
  }
  return columns;
}

/** The first quota that `requested` (more of each, on top of `usage`) takes past its limit. */
export function quotaExceeded(
  quotas: Quotas,
  usage: Quotas,
  requested: Partial<Quotas>,
): NonNullable<Problem["quota"]> | undefined {
  for (const name of QUOTA_NAMES) {
    const more = requested[name] ?? 0;
    if (more > 0 && usage[name] + more > quotas[name]) {
      return { name, usage: usage[name], limit: quotas[name], requested: more };
    }
  }
  return undefined;
}

/**
 * Locks the project's row until the transaction ends and returns its quotas: quota checks,
 * and the writes they allow, are serialized per project (on Postgres and PGlite alike).
 */
export async function lockProjectQuotas(tx: CatalogDb, projectId: string): Promise<Quotas> {
  const [row] = await tx.select().from(projects).where(eq(projects.id, projectId)).for("update");
  if (!row) throw errors.notFound("project", projectId);
  return quotasOf(row);
}

/** What the project uses: stored versions' bytes, images, and what its VM groups ask for. */
export async function projectUsage(db: CatalogDb, projectId: string): Promise<Quotas> {
  const [stored] = await db
    .select({ bytes: sum(imageVersions.size) })
    .from(imageVersions)
    .innerJoin(images, eq(images.id, imageVersions.imageId))
    .where(eq(images.projectId, projectId));
  const [imageCount] = await db.select({ n: count() }).from(images).where(eq(images.projectId, projectId));
  const [groups] = await db
    .select({
      instances: sum(vmGroups.size),
      vcpus: sum(sql`${vmGroups.size} * ${vmGroups.vcpus}`),
    })
    .from(vmGroups)
    .where(eq(vmGroups.projectId, projectId));
  return {
    storage_bytes: Number(stored?.bytes ?? 0),
    images: imageCount?.n ?? 0,
    instances: Number(groups?.instances ?? 0),
    vcpus: Number(groups?.vcpus ?? 0),
  };
}

/**
 * In a transaction: locks the project, and refuses (403 quota_exceeded) a request for
 * `requested` more of any quota than the project has left. A function is called once the
 * lock is held (what it reads cannot change under it).
 */
export async function assertWithinQuotas(
  tx: CatalogDb,
  projectId: string,
  requested: Partial<Quotas> | (() => Promise<Partial<Quotas>>),
): Promise<void> {
  const quotas = await lockProjectQuotas(tx, projectId);
  const wanted = typeof requested === "function" ? await requested() : requested;
  const exceeded = quotaExceeded(quotas, await projectUsage(tx, projectId), wanted);
  if (exceeded) throw errors.quotaExceeded(exceeded);
}

/** The project's storage quota, and the bytes its stored versions use of it. */
async function storage(db: CatalogDb, projectId: string): Promise<{ quotas: Quotas; usage: Quotas }> {
  const [row] = await db.select().from(projects).where(eq(projects.id, projectId));
  if (!row) throw errors.notFound("project", projectId);
  return { quotas: quotasOf(row), usage: await projectUsage(db, projectId) };
}

/** Bytes the project may still store. */
export async function storageLeft(db: CatalogDb, projectId: string): Promise<number> {
  const { quotas, usage } = await storage(db, projectId);
  return Math.max(0, quotas.storage_bytes - usage.storage_bytes);
}

/**
 * The bytes an upload ticket allows: the `declared` size, else what the storage quota leaves;
 * refused (403 quota_exceeded) when the quota does not cover it (or leaves nothing).
 */
export async function uploadAllowance(db: CatalogDb, projectId: string, declared?: number): Promise<number> {
  const { quotas, usage } = await storage(db, projectId);
  const exceeded = quotaExceeded(quotas, usage, { storage_bytes: declared ?? 1 });
  if (exceeded) throw errors.quotaExceeded(exceeded);
  return declared ?? quotas.storage_bytes - usage.storage_bytes;
}
