// A manager's report of its copy of an image version: recorded in the catalog, and the
// operations it sets off (groups following the image roll to a new version; the new version is
// distributed where the policy and older copies want it) started in the same transaction.
import { and, eq, max, ne } from "drizzle-orm";
import type { ReplicaReport } from "../../schemas/managers.ts";
import type { CatalogDb } from "../catalog/db.ts";
import { type OperationEvents, startOperation } from "../catalog/operations.ts";
import { replicaBytes } from "../catalog/progress.ts";
import { mayReport, versionBusiness, versionNotFound } from "../catalog/replicas.ts";
import { datacenters, imageReplicas, images, imageVersions } from "../catalog/schema.ts";
import type { Services } from "../env.ts";
import { errors } from "../errors.ts";
import { settleCurrentVersion } from "./images/current-version.ts";

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
        manifestDigest: report.manifest_digest ?? null,
        chunkCount: report.chunk_count ?? null,
      });
      await tx.update(images).set({ state: "available", updatedAt: now }).where(eq(images.id, imageId));
      // Unless a version is pinned, the new one is current: VM groups that follow the image
      // roll to it, one instance at a time (its distribution is started just below).
      const settled = await settleCurrentVersion(
        tx,
        scheduler,
        imageId,
        now,
        `image ${imageId} has a new version`,
        {
          distribute: false,
        },
      );
      touched.push(...settled.operations);
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
      if (report.manifest_digest && known.manifestDigest && report.manifest_digest !== known.manifestDigest) {
        throw errors.conflict(
          "manifest_digest_mismatch",
          `Version ${version} of image ${imageId} has manifest digest ${known.manifestDigest}, not ${report.manifest_digest}.`,
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
      // Of the whole version, done within total, whatever the manager counted.
      ...replicaBytes(report, known?.size ?? report.size ?? 0),
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
