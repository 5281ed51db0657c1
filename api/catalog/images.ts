import { and, eq, inArray } from "drizzle-orm";
import type { Image } from "../../schemas/images.ts";
import { errors } from "../errors.ts";
import type { CatalogDb } from "./db.ts";
import { toImage, toImageReplica } from "./mappers.ts";
import { datacenters, imageReplicas, images, imageVersions } from "./schema.ts";

/** Loads images with their current version and replicas in three queries, whatever the page size. */
export async function hydrateImages(db: CatalogDb, rows: (typeof images.$inferSelect)[]): Promise<Image[]> {
  if (rows.length === 0) return [];
  const ids = rows.map((r) => r.id);
  const [versions, replicas] = await Promise.all([
    db
      .select({
        imageId: imageVersions.imageId,
        version: imageVersions.version,
        size: imageVersions.size,
        digest: imageVersions.digest,
      })
      .from(imageVersions)
      .where(inArray(imageVersions.imageId, ids)),
    db
      .select({ replica: imageReplicas, region: datacenters.region })
      .from(imageReplicas)
      .innerJoin(datacenters, eq(datacenters.name, imageReplicas.datacenter))
      .where(inArray(imageReplicas.imageId, ids))
      .orderBy(imageReplicas.datacenter, imageReplicas.version),
  ]);
  return rows.map((row) => {
    const current = versions.find((v) => v.imageId === row.id && v.version === row.currentVersion);
    const own = replicas
      .filter((r) => r.replica.imageId === row.id)
      .map((r) => toImageReplica(r.replica, r.region, row));
    return toImage(row, current, own);
  });
}

export async function findImage(db: CatalogDb, projectId: string, id: string) {
  const [row] = await db
    .select()
    .from(images)
    .where(and(eq(images.id, id), eq(images.projectId, projectId)))
    .limit(1);
  return row;
}

/** The version of an image, or a 422 naming the request field that asked for it. */
export async function requireImageVersion(
  db: CatalogDb,
  image: { id: string; name: string },
  version: number,
  path: string,
) {
  const [row] = await db
    .select()
    .from(imageVersions)
    .where(and(eq(imageVersions.imageId, image.id), eq(imageVersions.version, version)))
    .limit(1);
  if (!row) {
    throw errors.unprocessable("image_version_not_found", `Image ${image.name} has no version ${version}.`, [
      { path, message: "unknown version" },
    ]);
  }
  return row;
}
