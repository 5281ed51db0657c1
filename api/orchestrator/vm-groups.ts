// What the orchestrator does for VM groups: place, record instances, have the datacenter's
// manager start them (it pulls the image first when it lacks it), and wait until every guest
// says it is ready. Each handler can be re-run from the top after a crash: it reads what the
// catalog already records and the manager calls are idempotent.
import { and, asc, eq, gte, inArray } from "drizzle-orm";
import type { ManagerInstanceSpec } from "../../schemas/manager-instances.ts";
import type { MetadataReference } from "../../schemas/vm-groups.ts";
import { datacenterStatus } from "../catalog/mappers.ts";
import { loadPlacementFacts } from "../catalog/placement-facts.ts";
import { datacenters, imageReplicas, images, imageVersions, instances, vmGroups } from "../catalog/schema.ts";
import type { Services } from "../env.ts";
import { newId } from "../ids.ts";
import {
  deleteInstanceOnManager,
  ManagerCallError,
  type ManagerTarget,
  setInstanceMetadataOnManager,
  startInstanceOnManager,
} from "./manager-client.ts";
import { choosePlacement, placementRequestOf, summarizeRefusals } from "./placement.ts";
import { type OperationContext, PermanentError } from "./runner.ts";

export const READY_TIMEOUT_MS = 10 * 60_000;

type Group = typeof vmGroups.$inferSelect;
type InstanceRow = typeof instances.$inferSelect;
type Datacenter = typeof datacenters.$inferSelect;

/** The values of metadata_from that exist now; the rest reach the guests when they appear. */
export function resolveReferences(
  references: Record<string, MetadataReference>,
  instancesByGroup: ReadonlyMap<string, { groupName: string; rows: InstanceRow[] }>,
): Record<string, string> {
  const values: Record<string, string> = {};
  for (const [key, ref] of Object.entries(references)) {
    const group = instancesByGroup.get(ref.vm_group);
    const row = group?.rows.find((r) => r.ordinal === ref.instance);
    if (!group || !row) continue;
    const value =
      ref.attribute === "address"
        ? row.address
        : ref.attribute === "id"
          ? row.id
          : ref.attribute === "name"
            ? `${group.groupName}-${row.ordinal}`
            : row.datacenter;
    if (value) values[key] = value;
  }
  return values;
}

async function loadGroup(services: Services, id: string): Promise<Group> {
  const [group] = await services.db.select().from(vmGroups).where(eq(vmGroups.id, id)).limit(1);
  if (!group) throw new PermanentError("vm_group_gone", `VM group ${id} no longer exists`);
  return group;
}

async function managerOf(services: Services, name: string): Promise<ManagerTarget & { row: Datacenter }> {
  const [row] = await services.db.select().from(datacenters).where(eq(datacenters.name, name)).limit(1);
  if (!row?.managerUrl) throw new Error(`datacenter ${name} has no registered manager`);
  // A datacenter that is down makes the step wait (retry with backoff) rather than fail at once.
  if (datacenterStatus(row.lastHeartbeatAt, services.now()) === "down")
    throw new Error(`datacenter ${name} is down`);
  return { datacenter: name, managerUrl: row.managerUrl, signer: services.instanceTokens, row };
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
  await services.db
    .update(vmGroups)
    .set({ datacenter: result.decision.datacenter, state: "provisioning", updatedAt: services.now() })
    .where(eq(vmGroups.id, group.id));
  return result.decision.datacenter;
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

async function referencedInstances(services: Services, group: Group) {
  const ids = [...new Set(Object.values(group.metadataFrom).map((r) => r.vm_group))];
  const map = new Map<string, { groupName: string; rows: InstanceRow[] }>();
  if (ids.length === 0) return map;
  const rows = await services.db
    .select({ instance: instances, groupName: vmGroups.name })
    .from(instances)
    .innerJoin(vmGroups, eq(vmGroups.id, instances.vmGroupId))
    .where(inArray(instances.vmGroupId, ids));
  for (const { instance, groupName } of rows) {
    const entry = map.get(instance.vmGroupId) ?? { groupName, rows: [] };
    entry.rows.push(instance);
    map.set(instance.vmGroupId, entry);
  }
  return map;
}

/** Instance rows 0..size-1 exist (created once), the ones beyond are removed from managers and the catalog. */
async function reconcileInstances(
  context: OperationContext,
  group: Group,
  datacenter: string,
  version: number,
) {
  const { services } = context;
  await services.db
    .insert(instances)
    .values(
      Array.from({ length: group.size }, (_, ordinal) => ({
        id: newId("instance"),
        vmGroupId: group.id,
        ordinal,
        datacenter,
        imageVersion: version,
      })),
    )
    .onConflictDoNothing();
  const surplus = await services.db
    .select()
    .from(instances)
    .where(and(eq(instances.vmGroupId, group.id), gte(instances.ordinal, group.size)));
  for (const row of surplus) {
    await removeInstance(services, row);
  }
  return services.db
    .select()
    .from(instances)
    .where(eq(instances.vmGroupId, group.id))
    .orderBy(asc(instances.ordinal));
}

async function removeInstance(services: Services, row: InstanceRow) {
  const target = await managerOf(services, row.datacenter);
  try {
    await deleteInstanceOnManager(target, row.id);
  } catch (error) {
    if (!(error instanceof ManagerCallError && error.status === 404)) throw error;
  }
  await services.db.delete(instances).where(eq(instances.id, row.id));
}

/** Asks the manager to run every instance, then follows the image pull and the boots until all are ready. */
async function startAndWait(
  context: OperationContext,
  group: Group,
  datacenter: string,
  version: number,
  rows: InstanceRow[],
) {
  const { services } = context;
  const target = await managerOf(services, datacenter);
  const metadata = {
    ...group.metadata,
    ...resolveReferences(group.metadataFrom, await referencedInstances(services, group)),
  };
  await context.progress({ step: "starting" });
  for (const row of rows) {
    const spec: ManagerInstanceSpec = {
      instance_id: row.id,
      name: `${group.name}-${row.ordinal}`,
      vm_group: group.name,
      image_id: group.imageId,
      image_version: version,
      vcpus: group.vcpus,
      memory_mb: group.memoryMb,
      metadata,
    };
    const status = await startInstanceOnManager(target, spec);
    // An instance that was already running keeps its spec; its metadata still follows the group.
    if (status.state !== "transferring-image") await setInstanceMetadataOnManager(target, row.id, metadata);
  }

  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    await context.checkCancelled();
    const current = await services.db.select().from(instances).where(eq(instances.vmGroupId, group.id));
    const failed = current.find((r) => r.state === "failed");
    if (failed) {
      throw new PermanentError(
        "instance_failed",
        `instance ${group.name}-${failed.ordinal} failed: ${failed.stateReason ?? "no reason given"}`,
      );
    }
    if (current.length > 0 && current.every((r) => r.state === "ready")) return current;
    // The replica only ever becomes available, so the step never goes back.
    const [replica] = await services.db
      .select()
      .from(imageReplicas)
      .where(
        and(
          eq(imageReplicas.imageId, group.imageId),
          eq(imageReplicas.version, version),
          eq(imageReplicas.datacenter, datacenter),
        ),
      );
    if (replica?.state !== "available") {
      const bytes = { bytes_done: replica?.bytesDone ?? 0, bytes_total: replica?.bytesTotal ?? null };
      await context.progress({
        step: "transferring-image",
        ...bytes,
        children: [{ datacenter, step: "transferring-image", ...bytes }],
      });
    } else {
      await context.progress({ step: "waiting-ready" });
    }
    await context.sleep(250);
  }
  throw new PermanentError(
    "ready_timeout",
    `instances of ${group.name} were not ready within ${READY_TIMEOUT_MS / 60_000} minutes`,
  );
}

/**
 * Creating and updating a group are the same convergence: placed once, instances 0..size-1
 * recorded and running with the group's metadata, the surplus removed, all of them ready.
 */
export async function convergeVmGroup(context: OperationContext): Promise<Record<string, unknown>> {
  const { services } = context;
  const placed = await loadGroup(services, context.operation.targetId);
  if (!placed.datacenter) await context.progress({ step: "placing" });
  const version = await versionOf(services, placed);
  const datacenter = await place(services, placed, version);
  const group = await loadGroup(services, placed.id);
  const rows = await reconcileInstances(context, group, datacenter, version);
  const ready = await startAndWait(context, group, datacenter, version, rows);
  await services.db
    .update(vmGroups)
    .set({ state: "ready", updatedAt: services.now() })
    .where(eq(vmGroups.id, group.id));
  return { datacenter, instances: ready.map((r) => r.id) };
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
  const rows = await services.db.select().from(instances).where(eq(instances.vmGroupId, group.id));
  for (const row of rows) await removeInstance(services, row);
  await services.db.delete(vmGroups).where(eq(vmGroups.id, group.id));
  return { deleted: true, instances: rows.length };
}
