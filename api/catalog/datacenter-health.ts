// What the catalog says when a datacenter's heartbeats stop: its instances turn `unknown`
// (nobody can vouch for them), and once its manager heartbeats again they are asked for again.
import { and, eq, inArray, isNotNull, isNull, lt, ne, or } from "drizzle-orm";
import type { DatacenterStatus } from "../../schemas/regions.ts";
import { datacenterStatus, HEARTBEAT_THRESHOLDS, type HeartbeatThresholds } from "./datacenter-status.ts";
import type { CatalogDb } from "./db.ts";
import { datacenters, imageReplicas, instances, vmGroups } from "./schema.ts";

export interface DatacenterHealth {
  name: string;
  managerUrl: string | null;
  status: DatacenterStatus;
  lastHeartbeatAt: Date | null;
}

export async function datacenterHealth(
  db: CatalogDb,
  now: Date,
  thresholds: HeartbeatThresholds = HEARTBEAT_THRESHOLDS,
): Promise<DatacenterHealth[]> {
  const rows = await db
    .select({ name: datacenters.name, managerUrl: datacenters.managerUrl, last: datacenters.lastHeartbeatAt })
    .from(datacenters);
  return rows.map((row) => ({
    name: row.name,
    managerUrl: row.managerUrl,
    status: datacenterStatus(row.last, now, thresholds),
    lastHeartbeatAt: row.last,
  }));
}

/** Why an instance of a down datacenter is unknown: said once, with the last heartbeat's time. */
export function downReason(datacenter: DatacenterHealth): string {
  const since = datacenter.lastHeartbeatAt?.toISOString() ?? "never";
  return `datacenter ${datacenter.name} is down: no heartbeat from its manager since ${since}`;
}

/** Turns every instance of the down datacenters `unknown`; returns how many changed. */
export async function markInstancesUnknown(db: CatalogDb, down: readonly DatacenterHealth[], now: Date) {
  let changed = 0;
  for (const datacenter of down) {
    const rows = await db
      .update(instances)
      .set({ state: "unknown", stateReason: downReason(datacenter), updatedAt: now })
      .where(and(eq(instances.datacenter, datacenter.name), ne(instances.state, "unknown")))
      .returning({ id: instances.id });
    changed += rows.length;
  }
  return changed;
}

/** States a report must still move on from: the ones a lost report would leave stuck. */
const UNSETTLED = ["pending", "transferring-image", "starting", "running", "unknown"];

/**
 * Instances of reachable datacenters the catalog may be wrong about: `unknown` ones, and
 * unsettled ones no report has touched since `staleBefore` (a manager's report can be lost
 * while the control plane restarts: it retries for seconds, not for as long as a restart takes).
 */
export function instancesToVerify(db: CatalogDb, datacenterNames: readonly string[], staleBefore: Date) {
  if (datacenterNames.length === 0) return Promise.resolve([]);
  return db
    .select({
      id: instances.id,
      datacenter: instances.datacenter,
      state: instances.state,
      updatedAt: instances.updatedAt,
    })
    .from(instances)
    .where(
      and(
        inArray(instances.datacenter, [...datacenterNames]),
        or(
          eq(instances.state, "unknown"),
          and(inArray(instances.state, UNSETTLED), lt(instances.updatedAt, staleBefore)),
        ),
      ),
    );
}

/**
 * Records what the manager says of an instance, unless a report got there first (the state
 * changed since it was read: then that report is newer and is kept).
 */
export async function recordManagerView(
  db: CatalogDb,
  row: { id: string; state: string },
  view: { state: string; reason: string | null; guestAttributes?: Record<string, string> },
  now: Date,
) {
  await db
    .update(instances)
    .set({
      state: view.state,
      stateReason: view.reason,
      ...(view.guestAttributes ? { guestAttributes: view.guestAttributes } : {}),
      updatedAt: now,
    })
    .where(and(eq(instances.id, row.id), eq(instances.state, row.state)));
}

/** One datacenter's status now; `unknown` when it does not exist or never heartbeat. */
export async function datacenterStatusOf(db: CatalogDb, name: string, now: Date): Promise<DatacenterStatus> {
  const [row] = await db
    .select({ last: datacenters.lastHeartbeatAt })
    .from(datacenters)
    .where(eq(datacenters.name, name))
    .limit(1);
  return datacenterStatus(row?.last ?? null, now);
}

/**
 * States a manager holds only in memory until the guest exists (waiting for the image, or
 * being created): a manager that (re)registers has just started and no longer knows them.
 */
const FORGOTTEN_ON_RESTART = ["pending", "transferring-image", "starting"];

/**
 * A manager registers when its process starts: the instances it could only have known in memory
 * turn `unknown`, so the orchestrator asks for them again (guests that were already running are
 * reattached and reported by the manager itself).
 */
export async function markForgottenInstancesUnknown(db: CatalogDb, datacenter: string, now: Date) {
  const rows = await db
    .update(instances)
    .set({
      state: "unknown",
      stateReason: `the manager of ${datacenter} restarted before starting it`,
      updatedAt: now,
    })
    .where(and(eq(instances.datacenter, datacenter), inArray(instances.state, FORGOTTEN_ON_RESTART)))
    .returning({ id: instances.id });
  return rows.length;
}

/**
 * Replicas of reachable datacenters still said to be on their way although no report touched
 * them since `staleBefore` (a pull reports every second while bytes move): their final report
 * may have been lost while the control plane restarted.
 */
export function replicasToVerify(db: CatalogDb, datacenterNames: readonly string[], staleBefore: Date) {
  if (datacenterNames.length === 0) return Promise.resolve([]);
  return db
    .select({
      imageId: imageReplicas.imageId,
      version: imageReplicas.version,
      datacenter: imageReplicas.datacenter,
    })
    .from(imageReplicas)
    .where(
      and(
        inArray(imageReplicas.datacenter, [...datacenterNames]),
        inArray(imageReplicas.state, ["pending", "transferring"]),
        lt(imageReplicas.updatedAt, staleBefore),
      ),
    );
}

/**
 * Image versions that instances run from in reachable datacenters while the catalog does not
 * record them available there (every report of a short pull can be lost while the control
 * plane restarts): a guest only boots from an available version, so the manager holds it.
 */
export function unrecordedReplicasOfRunningInstances(db: CatalogDb, datacenterNames: readonly string[]) {
  if (datacenterNames.length === 0) return Promise.resolve([]);
  return db
    .selectDistinct({
      imageId: vmGroups.imageId,
      version: instances.imageVersion,
      datacenter: instances.datacenter,
    })
    .from(instances)
    .innerJoin(vmGroups, eq(vmGroups.id, instances.vmGroupId))
    .leftJoin(
      imageReplicas,
      and(
        eq(imageReplicas.imageId, vmGroups.imageId),
        eq(imageReplicas.version, instances.imageVersion),
        eq(imageReplicas.datacenter, instances.datacenter),
      ),
    )
    .where(
      and(
        inArray(instances.datacenter, [...datacenterNames]),
        inArray(instances.state, ["running", "ready"]),
        isNotNull(instances.imageVersion),
        or(isNull(imageReplicas.state), ne(imageReplicas.state, "available")),
      ),
    );
}
