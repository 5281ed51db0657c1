import { and, arrayContains, eq, inArray, or } from "drizzle-orm";
import type { Image } from "../../schemas/images.ts";
import { errors } from "../errors.ts";
import type { CatalogDb } from "./db.ts";
import { toImage, toImageReplica } from "./mappers.ts";
import { datacenters, imageReplicas, images, imageVersions, projects } from "./schema.ts";
import { isBootable, type VersionLifecycle, versionStateAt } from "./version-rules.ts";

/** Loads images with their current version and replicas in three queries, whatever the page size. */
export async function hydrateImages(
  db: CatalogDb,
  rows: (typeof images.$inferSelect)[],
  viewer: string,
): Promise<Image[]> {
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
    return toImage(row, current, own, viewer);
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

/**
 * An image the project may read: its own, or one shared with it (members). Only its own may
 * be changed; see findImage.
 */
export async function findReadableImage(db: CatalogDb, projectId: string, id: string) {
  const [row] = await db
    .select()
    .from(images)
    .where(
      and(eq(images.id, id), or(eq(images.projectId, projectId), arrayContains(images.members, [projectId]))),
    )
    .limit(1);
  return row;
}

/**
 * The image to change: its own project's, a 404 for any other, and a 403 for a project it is
 * shared with (which knows it exists but may only read it).
 */
export async function findOwnImage(db: CatalogDb, projectId: string, id: string) {
  const row = await findReadableImage(db, projectId, id);
  if (!row) throw errors.notFound("image", id);
  if (row.projectId !== projectId) {
    throw errors.forbidden(
      `Image ${row.name} is shared with this project read-only: only its own project may change it.`,
    );
  }
  return row;
}

/** Members are other projects that exist; a 422 names the first that is not. */
export async function assertMembers(db: CatalogDb, projectId: string, members: readonly string[]) {
  const known = members.length
    ? new Set(
        (
          await db
            .select({ id: projects.id })
            .from(projects)
            .where(inArray(projects.id, [...members]))
        ).map((p) => p.id),
      )
    : new Set<string>();
  for (const [i, member] of members.entries()) {
    if (member === projectId) {
      throw errors.unprocessable(
        "invalid_member",
        "An image is always its own project's; share it with others.",
        [{ path: `members[${i}]`, message: "the image's own project" }],
      );
    }
    if (!known.has(member)) {
      throw errors.unprocessable("project_not_found", `No project ${member}.`, [
        { path: `members[${i}]`, message: "unknown project" },
      ]);
    }
  }
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

/** New instances boot only an active or deprecated version: a 409 names the version's state otherwise. */
export function assertBootable(image: { name: string }, version: VersionLifecycle, now: Date): void {
  const state = versionStateAt(version, now);
  if (!isBootable(state)) {
    throw errors.conflict(
      `version_${state}`,
      `Version ${version.version} of image ${image.name} is ${state}: no new instance may boot it.`,
    );
  }
}

/**
 * The VM groups using an image, as its owner may read them: its own by name, those of member
 * projects only counted (their names are theirs).
 */
export function describeImageUsers(
  users: readonly { name: string; projectId: string }[],
  owner: string,
): string {
  const own = users.filter((u) => u.projectId === owner).map((u) => u.name);
  const others = users.length - own.length;
  return [
    ...(own.length > 0 ? [`VM groups ${own.join(", ")}`] : []),
    ...(others > 0 ? [`${others} VM group(s) of projects it is shared with`] : []),
  ].join(" and ");
}
