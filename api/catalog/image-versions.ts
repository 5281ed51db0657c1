// An image's versions with their replicas, in two queries however many versions it has.
import { and, desc, eq } from "drizzle-orm";
import type { ImageVersionDetail } from "../../schemas/image-versions.ts";
import type { CatalogDb } from "./db.ts";
import { toImageReplica } from "./mappers.ts";
import { datacenters, imageReplicas, type images, imageVersions } from "./schema.ts";

/** The versions of `image` (only `version` when given), newest first. */
export async function imageVersionDetails(
  db: CatalogDb,
  image: typeof images.$inferSelect,
  version?: number,
): Promise<ImageVersionDetail[]> {
  const versionFilter = version === undefined ? undefined : eq(imageVersions.version, version);
  const replicaFilter = version === undefined ? undefined : eq(imageReplicas.version, version);
  const [versions, replicas] = await Promise.all([
    db
      .select()
      .from(imageVersions)
      .where(and(eq(imageVersions.imageId, image.id), versionFilter))
      .orderBy(desc(imageVersions.version)),
    db
      .select({ replica: imageReplicas, region: datacenters.region })
      .from(imageReplicas)
      .innerJoin(datacenters, eq(datacenters.name, imageReplicas.datacenter))
      .where(and(eq(imageReplicas.imageId, image.id), replicaFilter))
      .orderBy(imageReplicas.datacenter),
  ]);
  return versions.map((row) => ({
    version: row.version,
    size: row.size,
    digest: row.digest,
    chunk_count: row.chunkCount,
    created_at: row.createdAt.toISOString(),
    current: row.version === image.currentVersion,
    replicas: replicas
      .filter((r) => r.replica.version === row.version)
      .map((r) => toImageReplica(r.replica, r.region, image)),
  }));
}
