// An image's versions with their states and replicas (in two queries however many versions it
// has), the next version an upload commits, and the image a family names.
import { and, desc, eq } from "drizzle-orm";
import type { ImageVersionDetail } from "../../schemas/image-versions.ts";
import type { CatalogDb } from "./db.ts";
import { toImageReplica } from "./mappers.ts";
import { datacenters, imageReplicas, images, imageVersions } from "./schema.ts";
import { type FamilyCandidate, familyImageOf, versionStateAt } from "./version-rules.ts";

/** The versions of `image` (only `version` when given), newest first, with their states at `now`. */
export async function imageVersionDetails(
  db: CatalogDb,
  image: typeof images.$inferSelect,
  now: Date,
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
    state: versionStateAt(row, now),
    deprecate_at: row.deprecateAt?.toISOString() ?? null,
    obsolete_at: row.obsoleteAt?.toISOString() ?? null,
    current: row.version === image.currentVersion,
    replicas: replicas
      .filter((r) => r.replica.version === row.version)
      .map((r) => toImageReplica(r.replica, r.region, image)),
  }));
}

/** The next version number an upload of the image commits. */
export async function nextVersionOf(db: Pick<CatalogDb, "select">, imageId: string): Promise<number> {
  const [latest] = await db
    .select({ version: imageVersions.version })
    .from(imageVersions)
    .where(eq(imageVersions.imageId, imageId))
    .orderBy(desc(imageVersions.version))
    .limit(1);
  return (latest?.version ?? 0) + 1;
}

/** The image `family` names in the project now, or null when none of it can boot. */
export async function resolveFamily(
  db: Pick<CatalogDb, "select">,
  projectId: string,
  family: string,
  now: Date,
): Promise<string | null> {
  const rows = await db
    .select({ id: images.id, version: imageVersions })
    .from(images)
    .leftJoin(
      imageVersions,
      and(eq(imageVersions.imageId, images.id), eq(imageVersions.version, images.currentVersion)),
    )
    .where(and(eq(images.projectId, projectId), eq(images.family, family)));
  const candidates: FamilyCandidate[] = rows.map((r) => ({
    id: r.id,
    currentCreatedAt: r.version?.createdAt ?? null,
    currentState: r.version ? versionStateAt(r.version, now) : null,
  }));
  return familyImageOf(candidates);
}
