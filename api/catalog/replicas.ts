import { and, eq } from "drizzle-orm";
import { errors } from "../errors.ts";
import type { CatalogDb } from "./db.ts";
import { imageReplicas, images, instances, vmGroups } from "./schema.ts";

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

/** One datacenter's copy of one version of an image. */
export function replicaKey(imageId: string, version: number, datacenter: string): string {
  return `${imageId}@${version}@${datacenter}`;
}

/**
 * The copies VM groups need now: the version each placed group boots (pinned, or the
 * current one) in its datacenter (every datacenter a regional group spans), and the version
 * each recorded instance was created from.
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
        datacenters: vmGroups.datacenters,
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
    if (!version) continue;
    for (const datacenter of new Set([...(group.datacenter ? [group.datacenter] : []), ...group.datacenters]))
      add(replicaKey(group.imageId, version, datacenter), group.name);
  }
  for (const member of members) {
    if (member.version) add(replicaKey(member.imageId, member.version, member.datacenter), member.name);
  }
  return used;
}
