import { and, eq, sql } from "drizzle-orm";
import type { ReplicaReport } from "../../schemas/managers.ts";
import { errors } from "../errors.ts";
import type { CatalogDb } from "./db.ts";
import type { OperationEvents } from "./operations.ts";
import { datacenters, imageReplicas, images, imageVersions, operations } from "./schema.ts";

/**
 * Records what a manager says of its copy of an image version. The first `available` report
 * from the origin region is the upload's commit: it creates the version and makes it current.
 * A replica that is available never goes back to transferring.
 */
export async function recordReplicaReport(
  db: CatalogDb,
  events: OperationEvents,
  datacenterName: string,
  imageId: string,
  version: number,
  report: ReplicaReport,
  now: Date,
): Promise<void> {
  let touched: string[] = [];
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
    touched = await advanceReplicationOperations(tx, imageId, version, datacenterName, report, now);
  });
  for (const id of touched) events.changed(id);
}

/** Replication operations waiting on this replica follow its progress and end with it. */
async function advanceReplicationOperations(
  db: CatalogDb,
  imageId: string,
  version: number,
  datacenter: string,
  report: ReplicaReport,
  now: Date,
): Promise<string[]> {
  const waiting = (
    await db
      .select()
      .from(operations)
      .where(
        and(
          eq(operations.targetId, imageId),
          eq(operations.kind, "replicate-image"),
          eq(operations.state, "running"),
        ),
      )
  ).filter((op) => op.input.datacenter === datacenter && op.input.version === version);
  for (const op of waiting) {
    const done = report.state === "available";
    const bytesDone = Math.max(
      op.progress.bytes_done,
      done ? (report.bytes_total ?? 0) : (report.bytes_done ?? 0),
    );
    await db
      .update(operations)
      .set({
        state: done ? "succeeded" : report.state === "failed" ? "failed" : "running",
        progress: {
          ...op.progress,
          step: done ? "done" : "transferring-image",
          bytes_done: bytesDone,
          bytes_total: report.bytes_total ?? op.progress.bytes_total,
        },
        ...(report.state === "failed"
          ? { error: { code: "transfer_failed", message: report.error ?? "the transfer failed" } }
          : {}),
        ...(done ? { result: { datacenter, local_id: report.local_id ?? null } } : {}),
        updatedAt: now,
      })
      .where(eq(operations.id, op.id));
  }
  return waiting.map((op) => op.id);
}
