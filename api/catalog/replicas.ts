import { and, eq, ne, sql } from "drizzle-orm";
import type { ReplicaReport } from "../../schemas/managers.ts";
import type { Services } from "../env.ts";
import { errors } from "../errors.ts";
import { startOperation } from "../orchestrator/queue.ts";
import { rollGroupsFollowingImage } from "../orchestrator/vm-groups.ts";
import type { CatalogDb } from "./db.ts";
import type { OperationEvents } from "./operations.ts";
import { datacenters, imageReplicas, images, imageVersions, instances, vmGroups } from "./schema.ts";

/**
 * Records what a manager says of its copy of an image version. The first `available` report
 * from the origin region is the upload's commit: it creates the version and makes it current.
 * A replica that is available never goes back to transferring.
 */
export async function recordReplicaReport(
  db: CatalogDb,
  events: OperationEvents,
  /** Where a new version's distribution is scheduled. */
  scheduler: Pick<Services, "catalog">,
  datacenterName: string,
  imageId: string,
  version: number,
  report: ReplicaReport,
  now: Date,
): Promise<void> {
  const touched: string[] = [];
  await db.transaction(async (tx) => {
    const [image] = await tx.select().from(images).where(eq(images.id, imageId)).for("update").limit(1);
    if (!image) throw errors.notFound("image", imageId);
    const [datacenter] = await tx
      .select()
      .from(datacenters)
      .where(eq(datacenters.name, datacenterName))
      .limit(1);
    if (!datacenter) throw errors.notFound("datacenter", datacenterName);
    const [known] = await tx
      .select()
      .from(imageVersions)
      .where(and(eq(imageVersions.imageId, imageId), eq(imageVersions.version, version)))
      .limit(1);

    if (!known) {
      if (report.state !== "available" || datacenter.region !== image.originRegion) {
        throw errors.conflict(
          "version_unknown",
          `Image ${imageId} has no version ${version}; only its origin region can commit a new version.`,
        );
      }
      await tx.insert(imageVersions).values({
        imageId,
        version,
        size: report.size ?? 0,
        digest: report.digest ?? "",
        chunkCount: report.chunk_count ?? null,
      });
      await tx
        .update(images)
        .set({
          state: "available",
          currentVersion: sql`greatest(coalesce(${images.currentVersion}, 0), ${version})`,
          updatedAt: now,
        })
        .where(eq(images.id, imageId));
      // VM groups that follow the newest version roll to it, one instance at a time.
      touched.push(...(await rollGroupsFollowingImage(tx, scheduler, imageId, now)));
      // The new version goes wherever the policy wants it and wherever an older one is held.
      const [elsewhere] = await tx
        .select({ datacenter: imageReplicas.datacenter })
        .from(imageReplicas)
        .where(and(eq(imageReplicas.imageId, imageId), ne(imageReplicas.datacenter, datacenterName)))
        .limit(1);
      if (image.replicateTo.length > 0 || elsewhere) {
        const operation = await startOperation(tx, scheduler, {
          projectId: image.projectId,
          kind: "distribute-image-version",
          target: { type: "image", id: imageId },
          input: { version },
        });
        touched.push(operation.id);
      }
    } else if (report.digest && report.digest !== known.digest) {
      throw errors.conflict(
        "digest_mismatch",
        `Version ${version} of image ${imageId} has digest ${known.digest}, not ${report.digest}.`,
      );
    }

    const [current] = await tx
      .select({ state: imageReplicas.state })
      .from(imageReplicas)
      .where(
        and(
          eq(imageReplicas.imageId, imageId),
          eq(imageReplicas.version, version),
          eq(imageReplicas.datacenter, datacenterName),
        ),
      )
      .limit(1);
    if (current?.state === "available" && report.state === "transferring") return;
    const fields = {
      state: report.state,
      ...(report.local_id !== undefined ? { localId: report.local_id } : {}),
      ...(report.bytes_done !== undefined ? { bytesDone: report.bytes_done } : {}),
      ...(report.bytes_total !== undefined ? { bytesTotal: report.bytes_total } : {}),
      updatedAt: now,
    };
    await tx
      .insert(imageReplicas)
      // A copy nobody prepared a row for was pulled because a VM group needed it (the
      // policy and explicit requests record theirs first): collected once unused.
      .values({ imageId, version, datacenter: datacenterName, onDemand: !!known, ...fields })
      .onConflictDoUpdate({
        target: [imageReplicas.imageId, imageReplicas.version, imageReplicas.datacenter],
        set: fields,
      });
  });
  for (const id of touched) events.changed(id);
}

/** One datacenter's copy of one version of an image. */
export function replicaKey(imageId: string, version: number, datacenter: string): string {
  return `${imageId}@${version}@${datacenter}`;
}

/**
 * The copies VM groups need now: the version each placed group boots (pinned, or the
 * current one) in its datacenter, and the version each recorded instance was created from.
 * Keys are replicaKey(); values name the groups.
 */
export async function replicasInUse(db: CatalogDb, imageId?: string): Promise<Map<string, Set<string>>> {
  const [groups, members] = await Promise.all([
    db
      .select({
        name: vmGroups.name,
        imageId: vmGroups.imageId,
        pinned: vmGroups.imageVersion,
        current: images.currentVersion,
        datacenter: vmGroups.datacenter,
      })
      .from(vmGroups)
      .innerJoin(images, eq(images.id, vmGroups.imageId))
      .where(imageId ? eq(vmGroups.imageId, imageId) : undefined),
    db
      .select({
        name: vmGroups.name,
        imageId: vmGroups.imageId,
        version: instances.imageVersion,
        datacenter: instances.datacenter,
      })
      .from(instances)
      .innerJoin(vmGroups, eq(vmGroups.id, instances.vmGroupId))
      .where(imageId ? eq(vmGroups.imageId, imageId) : undefined),
  ]);
  const used = new Map<string, Set<string>>();
  const add = (key: string, name: string) => used.set(key, (used.get(key) ?? new Set()).add(name));
  for (const group of groups) {
    const version = group.pinned ?? group.current;
    if (group.datacenter && version) add(replicaKey(group.imageId, version, group.datacenter), group.name);
  }
  for (const member of members) {
    if (member.version) add(replicaKey(member.imageId, member.version, member.datacenter), member.name);
  }
  return used;
}
