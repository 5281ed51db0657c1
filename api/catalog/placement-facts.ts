import { and, asc, eq } from "drizzle-orm";
import type { PlacementDatacenter, PlacementInput } from "../placement-types.ts";
import { datacenterStatus } from "./datacenter-status.ts";
import type { CatalogDb } from "./db.ts";
import { datacenters, imageReplicas, vmGroups } from "./schema.ts";

/** The catalog facts the placement decision needs: datacenters, image holdings, the project's load. */
export async function loadPlacementFacts(
  db: CatalogDb,
  projectId: string,
  imageId: string,
  now: Date,
): Promise<
  Pick<PlacementInput, "datacenters" | "projectInstancesByRegion"> & {
    holdings: PlacementInput["image"]["holdings"];
  }
> {
  const [rows, holdings, groups] = await Promise.all([
    db.select().from(datacenters).orderBy(asc(datacenters.name)),
    db
      .select({ datacenter: imageReplicas.datacenter, version: imageReplicas.version })
      .from(imageReplicas)
      .where(and(eq(imageReplicas.imageId, imageId), eq(imageReplicas.state, "available"))),
    db
      .select({ region: vmGroups.region, placedIn: datacenters.region, size: vmGroups.size })
      .from(vmGroups)
      .leftJoin(datacenters, eq(datacenters.name, vmGroups.datacenter))
      .where(eq(vmGroups.projectId, projectId)),
  ]);
  const candidates: PlacementDatacenter[] = rows.map((dc) => ({
    name: dc.name,
    region: dc.region,
    status: datacenterStatus(dc.lastHeartbeatAt, now),
    hasManager: dc.managerUrl !== null,
    // Before its first heartbeat a datacenter's free capacity is its whole capacity.
    freeVcpus: dc.freeVcpus ?? dc.capacityVcpus,
    freeMemoryMb: dc.freeMemoryMb ?? dc.capacityMemoryMb,
  }));
  // A group counts in the region of its datacenter once placed, else in its requested region.
  const projectInstancesByRegion: Record<string, number> = {};
  for (const group of groups) {
    const region = group.placedIn ?? group.region;
    if (region) projectInstancesByRegion[region] = (projectInstancesByRegion[region] ?? 0) + group.size;
  }
  return { datacenters: candidates, holdings, projectInstancesByRegion };
}
