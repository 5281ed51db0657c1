import { and, eq, sql } from "drizzle-orm";
import type { ReplicaReport } from "../../schemas/managers.ts";
import { errors } from "../errors.ts";
import type { CatalogDb } from "./db.ts";
import { datacenters, imageReplicas, images, imageVersions } from "./schema.ts";

/**
 * Records what a manager says of its copy of an image version. The first `available` report
 * from the origin region is the upload's commit: it creates the version and makes it current.
 * A replica that is available never goes back to transferring.
 */
export async function recordReplicaReport(
  db: CatalogDb,
  datacenterName: string,
  imageId: string,
  version: number,
  report: ReplicaReport,
  now: Date,
): Promise<void> {
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
      .values({ imageId, version, datacenter: datacenterName, ...fields })
      .onConflictDoUpdate({
        target: [imageReplicas.imageId, imageReplicas.version, imageReplicas.datacenter],
        set: fields,
      });
  });
}
