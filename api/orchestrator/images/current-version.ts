// Keeping an image's current version, and what its family names, true to its versions'
// states: after an upload, a rollback (a pinned version), a state change by hand or a
// scheduled one, the current version is computed again (currentVersionOf) and, when it moved,
// the groups that follow the image roll to it and the replication policy copies it. Groups
// that name a family move to the family's image when that changed.
import { and, eq, isNotNull, isNull, lte, ne, or, sql } from "drizzle-orm";
import type { CatalogDb } from "../../catalog/db.ts";
import { resolveFamily } from "../../catalog/image-versions.ts";
import { startOperation } from "../../catalog/operations.ts";
import { images, imageVersions, vmGroups } from "../../catalog/schema.ts";
import { currentVersionOf, versionStateAt } from "../../catalog/version-rules.ts";
import type { Services } from "../../env.ts";

type Scheduler = Pick<Services, "catalog">;

/**
 * Computes the image's current version again and acts on a change. Answers the versions
 * before and after and the operations started (group rolls, the policy's copy).
 */
export async function settleCurrentVersion(
  tx: CatalogDb,
  scheduler: Scheduler,
  imageId: string,
  now: Date,
  reason: string,
  options: { distribute?: boolean } = {},
): Promise<{ before: number | null; after: number | null; operations: string[] }> {
  const [image] = await tx.select().from(images).where(eq(images.id, imageId)).for("update");
  if (!image) return { before: null, after: null, operations: [] };
  const versions = await tx.select().from(imageVersions).where(eq(imageVersions.imageId, imageId));
  const before = image.currentVersion;
  const after = currentVersionOf(versions, image.pinnedVersion, now);
  const operations: string[] = [];
  if (after !== before) {
    await tx.update(images).set({ currentVersion: after, updatedAt: now }).where(eq(images.id, imageId));
    if (after !== null) {
      operations.push(...(await rollGroupsFollowingImage(tx, scheduler, imageId, now, reason)));
      // The policy keeps the current version in its regions: a rollback target collected
      // meanwhile is copied there again.
      if (image.replicateTo.length > 0 && options.distribute !== false) {
        const operation = await startOperation(tx, scheduler, {
          projectId: image.projectId,
          kind: "distribute-image-version",
          target: { type: "image", id: imageId },
          input: { version: after },
        });
        operations.push(operation.id);
      }
    }
  }
  if (image.family)
    operations.push(...(await settleFamily(tx, scheduler, image.projectId, image.family, now)));
  return { before, after, operations };
}

/** Groups naming `family` whose image is no longer the one it names move to it, by an update. */
export async function settleFamily(
  tx: CatalogDb,
  scheduler: Scheduler,
  projectId: string,
  family: string,
  now: Date,
): Promise<string[]> {
  const resolved = await resolveFamily(tx, projectId, family, now);
  if (!resolved) return [];
  const movers = await tx
    .select({ id: vmGroups.id, datacenters: vmGroups.datacenters })
    .from(vmGroups)
    .where(
      and(
        eq(vmGroups.projectId, projectId),
        eq(vmGroups.imageFamily, family),
        ne(vmGroups.imageId, resolved),
        ne(vmGroups.state, "deleting"),
      ),
    );
  const started: string[] = [];
  for (const group of movers) {
    // An unplaced group only records the image: its create, still running, boots it.
    await tx
      .update(vmGroups)
      .set({
        imageId: resolved,
        ...(group.datacenters.length > 0 ? { state: "updating" } : {}),
        updatedAt: now,
      })
      .where(eq(vmGroups.id, group.id));
    if (group.datacenters.length === 0) continue;
    const operation = await startOperation(tx, scheduler, {
      projectId,
      kind: "update-vm-group",
      target: { type: "vm-group", id: group.id },
      input: { reason: `family ${family} now names image ${resolved}` },
    });
    started.push(operation.id);
  }
  return started;
}

/**
 * Versions whose deprecate_at or obsolete_at has passed take that state for good, and their
 * images' current versions are settled. Answers the images touched.
 */
export async function applyScheduledVersionStates(services: Services): Promise<string[]> {
  const { db, now } = services;
  const at = now();
  const due = await db
    .select()
    .from(imageVersions)
    .where(
      and(
        ne(imageVersions.state, "deleted"),
        or(
          and(
            eq(imageVersions.state, "active"),
            isNotNull(imageVersions.deprecateAt),
            lte(imageVersions.deprecateAt, at),
          ),
          and(
            ne(imageVersions.state, "obsolete"),
            isNotNull(imageVersions.obsoleteAt),
            lte(imageVersions.obsoleteAt, at),
          ),
        ),
      ),
    );
  const touched = [...new Set(due.map((v) => v.imageId))];
  for (const imageId of touched) {
    await db.transaction(async (tx) => {
      for (const row of due.filter((v) => v.imageId === imageId)) {
        await tx
          .update(imageVersions)
          .set({ state: versionStateAt(row, at) })
          .where(
            and(
              eq(imageVersions.imageId, row.imageId),
              eq(imageVersions.version, row.version),
              eq(imageVersions.state, row.state),
            ),
          );
      }
      await settleCurrentVersion(tx, services, imageId, at, `a scheduled state change of image ${imageId}`);
    });
  }
  return touched;
}

/**
 * The current version of `imageId` changed (an upload, a rollback, a deprecation): every placed
 * group that follows the image (no pinned image_version) gets an update operation, which
 * replaces its instances one at a time. Groups pinned to a version keep running as they are.
 * Returns the operation IDs.
 */
async function rollGroupsFollowingImage(
  tx: CatalogDb,
  scheduler: Pick<Services, "catalog">,
  imageId: string,
  now: Date,
  reason: string,
): Promise<string[]> {
  const followers = await tx
    .select({ id: vmGroups.id, projectId: vmGroups.projectId })
    .from(vmGroups)
    .where(
      and(
        eq(vmGroups.imageId, imageId),
        isNull(vmGroups.imageVersion),
        sql`cardinality(${vmGroups.datacenters}) > 0`,
        ne(vmGroups.state, "deleting"),
      ),
    );
  const started: string[] = [];
  for (const group of followers) {
    await tx.update(vmGroups).set({ state: "updating", updatedAt: now }).where(eq(vmGroups.id, group.id));
    const operation = await startOperation(tx, scheduler, {
      projectId: group.projectId,
      kind: "update-vm-group",
      target: { type: "vm-group", id: group.id },
      input: { reason },
    });
    started.push(operation.id);
  }
  return started;
}
