// What a VM group's guests see as metadata: the group's plain values and the `metadata_from`
// references that resolve now, pushed to the managers running its instances, and to the
// groups that reference it whenever a value they take from it changes.
import { eq, inArray } from "drizzle-orm";
import { instances, vmGroups } from "../catalog/schema.ts";
import { groupInstances } from "../catalog/vm-groups.ts";
import type { Services } from "../env.ts";
import { resolveReferences } from "./dependencies.ts";
import { instanceTargetOf, ManagerCallError, setInstanceMetadataOnManager } from "./manager-client.ts";

type Group = typeof vmGroups.$inferSelect;
type InstanceRow = typeof instances.$inferSelect;

/** The instances of the groups that `group` takes metadata from, by group. */
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

/** What the group's guests see: its plain values and the references that resolve now. */
export async function metadataOf(services: Services, group: Group): Promise<Record<string, string>> {
  return {
    ...group.metadata,
    ...resolveReferences(group.metadataFrom, await referencedInstances(services, group)),
  };
}

/** Sends the group's current metadata to every instance its manager runs; the guests' long-polls return with it. */
export async function pushMetadata(services: Services, group: Group): Promise<void> {
  if (group.datacenters.length === 0) return;
  const metadata = await metadataOf(services, group);
  const rows = await groupInstances(services.db, group.id);
  for (const row of rows) {
    const target = await instanceTargetOf(services, row.datacenter);
    try {
      await setInstanceMetadataOnManager(target, row.id, metadata);
    } catch (error) {
      // Not on the manager yet: its start (by the group's operation) carries the metadata.
      if (!(error instanceof ManagerCallError && error.status === 404)) throw error;
    }
  }
}

const PUSH_ATTEMPTS = 5;

/**
 * A value other groups may reference changed in `groupId` (an instance recorded, replaced, or
 * reported an address or guest attribute): the groups that take metadata from it get their
 * completed metadata pushed to their managers now, retried with backoff in the background.
 */
export function pushMetadataToDependents(
  services: Services,
  groupId: string,
  log: (line: string) => void = (line) => console.warn(line),
): Promise<void> {
  const push = async () => {
    const [source] = await services.db
      .select({ projectId: vmGroups.projectId })
      .from(vmGroups)
      .where(eq(vmGroups.id, groupId));
    if (!source) return;
    const dependents = (
      await services.db.select().from(vmGroups).where(eq(vmGroups.projectId, source.projectId))
    ).filter((g) => g.id !== groupId && Object.values(g.metadataFrom).some((r) => r.vm_group === groupId));
    await Promise.all(
      dependents.map(async (dependent) => {
        for (let attempt = 1; ; attempt++) {
          try {
            await pushMetadata(services, dependent);
            return;
          } catch (error) {
            if (attempt === PUSH_ATTEMPTS) {
              log(`[WARN] could not push metadata to ${dependent.name}: ${error}`);
              return;
            }
            await new Promise((resolve) => setTimeout(resolve, 200 * 2 ** attempt));
          }
        }
      }),
    );
  };
  return push().catch((error) => log(`[WARN] metadata push for dependents of ${groupId} failed: ${error}`));
}
