import { and, eq, max, ne, sql } from "drizzle-orm";
import type { ReplicaReport } from "../../schemas/managers.ts";
import type { Services } from "../env.ts";
import { errors } from "../errors.ts";
import { rollGroupsFollowingImage } from "../orchestrator/vm-groups.ts";
import type { CatalogDb } from "./db.ts";
import { type OperationEvents, startOperation } from "./operations.ts";
import { datacenters, imageReplicas, images, imageVersions, instances, vmGroups } from "./schema.ts";

/** What ties a datacenter to an image version in the catalog. */
export interface VersionBusiness {
  /** The state of the datacenter's replica row, if it has one. */
  replica: string | undefined;
  /** An instance in the datacenter boots that version (its manager pulls it on demand). */
  booted: boolean;
}

/** The catalog facts of VersionBusiness, for one datacenter and one image version. */
export async function versionBusiness(
  db: Pick<CatalogDb, "select">,
  datacenter: string,
  imageId: string,
  version: number,
): Promise<VersionBusiness> {
  const [[replica], [instance]] = await Promise.all([
    db
      .select({ state: imageReplicas.state })
      .from(imageReplicas)
      .where(
        and(
          eq(imageReplicas.imageId, imageId),
          eq(imageReplicas.version, version),
          eq(imageReplicas.datacenter, datacenter),
        ),
      )
      .limit(1),
    db
      .select({ id: instances.id })
      .from(instances)
      .innerJoin(vmGroups, eq(vmGroups.id, instances.vmGroupId))
      .where(
        and(
          eq(vmGroups.imageId, imageId),
          eq(instances.imageVersion, version),
          eq(instances.datacenter, datacenter),
        ),
      )
      .limit(1),
  ]);
  return { replica: replica?.state, booted: !!instance };
}

/**
 * A manager gets read tokens for a version's sources only while it has to pull it: the
 * orchestrator asked it to (a pending or transferring replica there), or an instance there
 * boots it. Any other manager credential would read every project's images.
 */
export function mayFetchSources(business: VersionBusiness): boolean {
  return business.booted || business.replica === "pending" || business.replica === "transferring";
}

/**
 * A manager reports on a known version only where the catalog expects a copy: a replica row
 * (asked for, or held), an instance booting it, or an upload to the image's origin region
 * (an available report, checked against the recorded digest and size). Otherwise a report
 * would create a row, and with it the right to that version's sources.
 */
export function mayReport(business: VersionBusiness, report: { state: string }, origin: boolean): boolean {
  return business.replica !== undefined || business.booted || (origin && report.state === "available");
}

/** What a manager without business with a version is told: the same as for one that does not exist. */
export function versionNotFound(imageId: string, version: number) {
  return errors.notFound("image version", `${imageId}@${version}`);
}

/**
 * Records what a manager says of its copy of an image version. The first `available` report
 * from the origin region is the upload's commit: it creates the version (the next number, no
 * gap) and makes it current. Later reports must match the digest and size recorded then. A
 * replica that is available never goes back to transferring.
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
    const [datacenter] = await tx
      .select()
      .from(datacenters)
      .where(eq(datacenters.name, datacenterName))
      .limit(1);
    if (!datacenter) throw errors.notFound("datacenter", datacenterName);
    if (!image) throw versionNotFound(imageId, version);
    const origin = datacenter.region === image.originRegion;
    const [known] = await tx
      .select()
      .from(imageVersions)
      .where(and(eq(imageVersions.imageId, imageId), eq(imageVersions.version, version)))
      .limit(1);

    // The datacenter's replica row (none for a new version: it references the version).
    let held: string | undefined;
    if (!known) {
      // Only the origin region receives uploads: to any other datacenter the image's
      // versions are none of its business, existing or not.
      if (!origin) throw versionNotFound(imageId, version);
      if (report.state !== "available") {
        throw errors.conflict(
          "version_unknown",
          `Image ${imageId} has no version ${version}; only an available report commits a new version.`,
        );
      }
      const [latest] = await tx
        .select({ version: max(imageVersions.version) })
        .from(imageVersions)
        .where(eq(imageVersions.imageId, imageId));
      const next = (latest?.version ?? 0) + 1;
      if (version !== next) {
        throw errors.conflict(
          "version_out_of_order",
          `Image ${imageId} commits version ${next} next (the upload ticket's), not ${version}.`,
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
    } else {
      const business = await versionBusiness(tx, datacenterName, imageId, version);
      if (!mayReport(business, report, origin)) throw versionNotFound(imageId, version);
      held = business.replica;
      if (report.digest && report.digest !== known.digest) {
        throw errors.conflict(
          "digest_mismatch",
          `Version ${version} of image ${imageId} has digest ${known.digest}, not ${report.digest}.`,
        );
      }
      if (report.size !== undefined && report.size !== known.size) {
        throw errors.conflict(
          "size_mismatch",
          `Version ${version} of image ${imageId} has ${known.size} bytes, not ${report.size}.`,
        );
      }
    }

    if (held === "available" && report.state === "transferring") return;
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
