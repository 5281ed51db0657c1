// What the orchestrator does for VM groups: place, record instances, have the datacenter's
// manager start them (it pulls the image first when it lacks it), wait until every guest says
// it is ready, and move a group to another image version by replacing its instances one at a
// time. Each handler can be re-run from the top after a crash: it reads what the catalog
// already records and the manager calls are idempotent.
import { and, desc, eq, gte, isNull, sql } from "drizzle-orm";
import type { Distribution } from "../../schemas/vm-groups.ts";
import { allocateNetworkIp } from "../catalog/addresses.ts";
import { loadPlacementFacts } from "../catalog/placement-facts.ts";
import { images, imageVersions, instances, vmGroups } from "../catalog/schema.ts";
import { isBootable, versionStateAt } from "../catalog/version-rules.ts";
import { groupInstances } from "../catalog/vm-groups.ts";
import type { Services } from "../env.ts";
import { newId } from "../ids.ts";
import { distributeInstances } from "./distribution.ts";
import { isFirewallSource } from "./firewalls.ts";
import { choosePlacement, placementRequestOf, summarizeRefusals } from "./placement.ts";
import { type OperationContext, PermanentError } from "./runner.ts";
import { removeInstance, startOnManager, waitUntilReady } from "./vm-group-instances.ts";
import { metadataOf, pushMetadata, pushMetadataToDependents } from "./vm-group-metadata.ts";

type Group = typeof vmGroups.$inferSelect;
type InstanceRow = typeof instances.$inferSelect;

/** The ordinals below `size` that have no instance yet, ascending. */
export function missingOrdinals(size: number, present: readonly number[]): number[] {
  const have = new Set(present);
  return Array.from({ length: size }, (_, ordinal) => ordinal).filter((ordinal) => !have.has(ordinal));
}

/** The instances that run another image version than `version`, in ordinal order: replaced one at a time. */
export function instancesToReplace<
  T extends { ordinal: number; imageVersion: number | null; retiring: boolean },
>(rows: readonly T[], version: number): T[] {
  return rows
    .filter((r) => !r.retiring && r.imageVersion !== null && r.imageVersion !== version)
    .sort((a, b) => a.ordinal - b.ordinal);
}

async function loadGroup(services: Services, id: string): Promise<Group> {
  const [group] = await services.db.select().from(vmGroups).where(eq(vmGroups.id, id)).limit(1);
  if (!group) throw new PermanentError("vm_group_gone", `VM group ${id} no longer exists`);
  return group;
}

/** Chooses the group's datacenter once (by region or policy) and records it. */
async function place(services: Services, group: Group, version: number): Promise<string> {
  if (group.datacenter) return group.datacenter;
  const [held] = await services.db
    .select({ size: imageVersions.size })
    .from(imageVersions)
    .where(and(eq(imageVersions.imageId, group.imageId), eq(imageVersions.version, version)));
  if (!held)
    throw new PermanentError("image_version_gone", `image ${group.imageId} has no version ${version}`);
  const facts = await loadPlacementFacts(services.db, group.projectId, group.imageId, services.now());
  const result = choosePlacement({
    request: placementRequestOf(group),
    machine: { vcpus: group.vcpus, memoryMb: group.memoryMb },
    size: group.size,
    datacenters: facts.datacenters,
    image: { version, size: held.size, holdings: facts.holdings },
    projectInstancesByRegion: facts.projectInstancesByRegion,
  });
  // No candidate may be a datacenter that is down for a moment: retried with backoff, bounded.
  if (!result.decision)
    throw new Error(`no datacenter can take the group: ${summarizeRefusals(result.candidates)}`);
  const datacenter = result.decision.datacenter;
  await services.db
    .update(vmGroups)
    .set({ datacenter, datacenters: [datacenter], state: "provisioning", updatedAt: services.now() })
    .where(eq(vmGroups.id, group.id));
  return datacenter;
}

/** Where each missing ordinal runs: the group's one datacenter, or spread over its region's. */
async function datacentersFor(
  services: Services,
  group: Group,
  version: number,
  missing: readonly number[],
  existing: readonly InstanceRow[],
): Promise<Map<number, string>> {
  if (group.datacenter) return new Map(missing.map((ordinal) => [ordinal, group.datacenter as string]));
  if (!group.distribution || !group.region)
    throw new Error(`VM group ${group.id} is neither placed nor regional`);
  if (missing.length === 0) return new Map();
  const facts = await loadPlacementFacts(services.db, group.projectId, group.imageId, services.now());
  const present: Record<string, number> = {};
  for (const row of existing.filter((r) => !r.retiring))
    present[row.datacenter] = (present[row.datacenter] ?? 0) + 1;
  const result = distributeInstances({
    distribution: group.distribution as Distribution,
    region: group.region,
    machine: { vcpus: group.vcpus, memoryMb: group.memoryMb },
    ordinals: missing,
    present,
    datacenters: facts.datacenters,
    holding: new Set(facts.holdings.filter((h) => h.version === version).map((h) => h.datacenter)),
  });
  // Like a group no datacenter can take: retried with backoff, bounded.
  if (!result.assignments)
    throw new Error(
      `no datacenter of region ${group.region} can take every new instance of ${group.name}: ${result.refused.join("; ")}`,
    );
  return new Map(result.assignments.map((a) => [a.ordinal, a.datacenter]));
}

async function versionOf(services: Services, group: Group): Promise<number> {
  if (group.imageVersion) return group.imageVersion;
  const [image] = await services.db.select().from(images).where(eq(images.id, group.imageId)).limit(1);
  if (!image?.currentVersion) {
    throw new PermanentError(
      "image_not_uploaded",
      `image ${group.imageId} has no uploaded version to boot from`,
    );
  }
  return image.currentVersion;
}

/** New instances boot only an active or deprecated version; running ones keep theirs whatever its state. */
async function assertBootable(services: Services, group: Group, version: number): Promise<void> {
  const [row] = await services.db
    .select()
    .from(imageVersions)
    .where(and(eq(imageVersions.imageId, group.imageId), eq(imageVersions.version, version)));
  const state = row ? versionStateAt(row, services.now()) : "deleted";
  if (!isBootable(state)) {
    throw new PermanentError(
      `image_version_${state}`,
      `version ${version} of image ${group.imageId} is ${state}: no new instance of ${group.name} may boot it`,
    );
  }
}

/**
 * Every ordinal 0..size-1 has an instance row (created once), the ones beyond are removed
 * from their manager (process and overlay) and the catalog, highest first.
 */
async function reconcileInstances(services: Services, group: Group, version: number) {
  const existing = await groupInstances(services.db, group.id);
  const missing = missingOrdinals(
    group.size,
    existing.filter((r) => !r.retiring).map((r) => r.ordinal),
  );
  if (missing.length > 0) await assertBootable(services, group, version);
  const where = await datacentersFor(services, group, version, missing, existing);
  for (const ordinal of missing) {
    const datacenter = where.get(ordinal) as string;
    await services.db.transaction(async (tx) =>
      tx
        .insert(instances)
        .values({
          id: newId("instance"),
          vmGroupId: group.id,
          ordinal,
          datacenter,
          imageVersion: version,
          networkId: group.networkId,
          networkIp: await allocateNetworkIp(tx, group.networkId, datacenter),
        })
        .onConflictDoNothing(),
    );
  }
  // Instances recorded before networks had addresses get theirs now.
  for (const row of existing.filter((r) => r.networkIp === null)) {
    await services.db.transaction(async (tx) =>
      tx
        .update(instances)
        .set({
          networkId: group.networkId,
          networkIp: await allocateNetworkIp(tx, group.networkId, row.datacenter),
        })
        .where(and(eq(instances.id, row.id), isNull(instances.networkIp))),
    );
  }
  const surplus = await services.db
    .select()
    .from(instances)
    .where(and(eq(instances.vmGroupId, group.id), gte(instances.ordinal, group.size)))
    .orderBy(desc(instances.ordinal));
  for (const row of surplus) await removeInstance(services, row);
  // Every time, not only on a change: a run cut short after recording instances left it stale.
  if (group.distribution) await recordDatacenters(services, group.id);
  if (missing.length > 0 || surplus.length > 0) {
    await pushMetadataToDependents(services, group.id);
    await sendFirewallsNaming(services, group);
  }
  return groupInstances(services.db, group.id);
}

/** A regional group spans the datacenters its instances run in. */
async function recordDatacenters(services: Services, groupId: string) {
  await services.db
    .update(vmGroups)
    .set({
      datacenters: sql`array(select distinct ${instances.datacenter} from ${instances} where ${instances.vmGroupId} = ${groupId} order by 1)`,
    })
    .where(eq(vmGroups.id, groupId));
}

/** The group's instances came or went: rules naming it as their source must match the ones there are now. */
async function sendFirewallsNaming(services: Services, group: { name: string; networkId: string }) {
  if (await isFirewallSource(services, group)) await services.firewallChanged?.(group.networkId);
}

/**
 * Replaces one instance by a new one of the same ordinal on `version`, in the same datacenter
 * (so a regional group keeps its distribution): the new one starts and must be ready before
 * the old one is stopped and removed, so the group never has fewer than size - 1 ready
 * instances. A replacement that fails is removed and the old instance kept.
 */
async function replaceInstance(context: OperationContext, group: Group, version: number, old: InstanceRow) {
  const { services } = context;
  const replacementId = newId("instance");
  await services.db.transaction(async (tx) => {
    // Retire first: at most one row per ordinal is not retiring (the partial unique index).
    await tx.update(instances).set({ retiring: true }).where(eq(instances.id, old.id));
    // Old and new run side by side until the new one is ready: each has its own address.
    await tx.insert(instances).values({
      id: replacementId,
      vmGroupId: group.id,
      ordinal: old.ordinal,
      datacenter: old.datacenter,
      imageVersion: version,
      networkId: group.networkId,
      networkIp: await allocateNetworkIp(tx, group.networkId, old.datacenter),
    });
  });
  const [replacement] = await services.db.select().from(instances).where(eq(instances.id, replacementId));
  if (!replacement) throw new Error(`replacement ${replacementId} of ${group.name}-${old.ordinal} vanished`);
  await finishReplacement(context, group, version, old, replacement);
}

async function finishReplacement(
  context: OperationContext,
  group: Group,
  version: number,
  old: InstanceRow,
  replacement: InstanceRow,
) {
  const { services } = context;
  await startOnManager(services, group, replacement, version, await metadataOf(services, group));
  await pushMetadata(services, group);
  try {
    await waitUntilReady(context, group, version, [replacement.id], "replacing");
  } catch (error) {
    if (!(error instanceof PermanentError)) throw error;
    await removeInstance(services, replacement);
    await services.db.update(instances).set({ retiring: false }).where(eq(instances.id, old.id));
    throw new PermanentError(
      error.code,
      `${group.name}-${old.ordinal} was kept on version ${old.imageVersion ?? "?"}: its replacement on version ${version} did not become ready: ${error.message}`,
    );
  }
  await removeInstance(services, old);
  await pushMetadataToDependents(services, group.id);
}

/**
 * Creating and updating a group are the same convergence: placed once (a regional group: each
 * new instance in a datacenter of its region); instances 0..size-1 recorded and running with
 * the group's metadata, the surplus removed, all of them ready; then every instance on another
 * image version than the group's is replaced, one at a time.
 */
export async function convergeVmGroup(context: OperationContext): Promise<Record<string, unknown>> {
  const { services } = context;
  const placed = await loadGroup(services, context.operation.targetId);
  if (placed.datacenters.length === 0) await context.progress({ step: "placing" });
  const version = await versionOf(services, placed);
  if (!placed.distribution) await place(services, placed, version);
  else if (placed.state === "pending")
    await services.db
      .update(vmGroups)
      .set({ state: "provisioning", updatedAt: services.now() })
      .where(eq(vmGroups.id, placed.id));
  const group = await loadGroup(services, placed.id);
  const rows = await reconcileInstances(services, group, version);

  // Every current instance runs (a new one on the group's version, an existing one as it is).
  await context.progress({ step: "starting" });
  const metadata = await metadataOf(services, group);
  const current = rows.filter((r) => !r.retiring);
  for (const row of current)
    await startOnManager(services, group, row, row.imageVersion ?? version, metadata);
  // Computed again now that the manager knows every instance: a referenced value recorded
  // while they were being started found nothing to push to, and instances that already ran
  // take the group's changed metadata.
  await pushMetadata(services, group);
  await waitUntilReady(
    context,
    group,
    version,
    current.map((r) => r.id),
    "waiting-ready",
  );

  // A replacement interrupted by a crash: its new instance is ready now, the old one goes.
  for (const old of rows.filter((r) => r.retiring)) {
    const replacement = current.find((r) => r.ordinal === old.ordinal);
    if (replacement) await finishReplacement(context, group, version, old, replacement);
    else await removeInstance(services, old);
  }

  const outdated = instancesToReplace(current, version);
  if (outdated.length > 0) await assertBootable(services, group, version);
  for (const [index, old] of outdated.entries()) {
    await context.progress({
      step: "replacing",
      children: [
        {
          datacenter: old.datacenter,
          step: `replacing ${index + 1}/${outdated.length}`,
          bytes_done: 0,
          bytes_total: null,
        },
      ],
    });
    await replaceInstance(context, group, version, old);
  }

  await services.db
    .update(vmGroups)
    .set({ state: "ready", updatedAt: services.now() })
    .where(eq(vmGroups.id, group.id));
  // Replacements have other addresses than the instances they replaced.
  if (outdated.length > 0) await sendFirewallsNaming(services, group);
  const final = await groupInstances(services.db, group.id);
  return {
    ...(group.datacenter
      ? { datacenter: group.datacenter }
      : { datacenters: [...new Set(final.map((r) => r.datacenter))].sort() }),
    image_version: version,
    instances: final.map((r) => r.id),
    ...(outdated.length > 0 ? { replaced: outdated.map((r) => r.id) } : {}),
  };
}

export async function deleteVmGroup(context: OperationContext): Promise<Record<string, unknown>> {
  const { services } = context;
  const [group] = await services.db
    .select()
    .from(vmGroups)
    .where(eq(vmGroups.id, context.operation.targetId))
    .limit(1);
  if (!group) return { deleted: true };
  await context.progress({ step: "stopping" });
  const rows = await groupInstances(services.db, group.id);
  // Highest ordinals first, as a resize down does; each removal takes its overlay with it.
  for (const row of rows.reverse()) await removeInstance(services, row);
  await services.db.delete(vmGroups).where(eq(vmGroups.id, group.id));
  await sendFirewallsNaming(services, group);
  return { deleted: true, instances: rows.length };
}
