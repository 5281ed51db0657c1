// Internal names as the catalog answers them for a manager asking on behalf of one of its
// instances: an instance's name is its address on the group's network, a group's name the
// addresses of its ready instances in the region the name gives. A name is looked up only in the
// asking instance's project; a name of another project is answered exactly as one that does not
// exist, so a guest learns nothing of other projects.
import { and, eq } from "drizzle-orm";
import { alias } from "drizzle-orm/pg-core";
import { canonicalName, type InternalNameAnswer, parseInternalName } from "../../schemas/internal-names.ts";
import type { CatalogDb } from "./db.ts";
import { datacenters, instances, projects, vmGroups } from "./schema.ts";

/** The ordinal an instance label `GROUP-ORDINAL` names (undefined: `web-x`, `web-01`, `db-0` for `web`). */
export function ordinalOfInstanceLabel(group: string, label: string): number | undefined {
  const prefix = `${group}-`;
  if (!label.startsWith(prefix)) return undefined;
  const digits = label.slice(prefix.length);
  if (!/^(0|[1-9][0-9]{0,8})$/.test(digits)) return undefined;
  return Number(digits);
}

/** The project (its ID and name) of `instanceId`, if it is an instance of `datacenter`. */
async function projectOfInstance(db: CatalogDb, datacenter: string, instanceId: string) {
  const [row] = await db
    .select({ id: projects.id, name: projects.name })
    .from(instances)
    .innerJoin(vmGroups, eq(vmGroups.id, instances.vmGroupId))
    .innerJoin(projects, eq(projects.id, vmGroups.projectId))
    .where(and(eq(instances.id, instanceId), eq(instances.datacenter, datacenter)))
    .limit(1);
  return row;
}

const groupDatacenter = alias(datacenters, "group_datacenter");
const instanceDatacenter = alias(datacenters, "instance_datacenter");

/**
 * What `name` is for the guest of `askingInstanceId`, an instance of `datacenter`: undefined
 * when the asker is not an instance of that datacenter, or the name does not exist in its project.
 */
export async function resolveInternalName(
  db: CatalogDb,
  datacenter: string,
  askingInstanceId: string,
  name: string,
): Promise<InternalNameAnswer | undefined> {
  const project = await projectOfInstance(db, datacenter, askingInstanceId);
  if (!project) return undefined;
  const parsed = parseInternalName(name);
  if (!parsed || parsed.project !== project.name) return undefined;
  const ordinal =
    parsed.instance === undefined ? undefined : ordinalOfInstanceLabel(parsed.group, parsed.instance);
  if (parsed.instance !== undefined && ordinal === undefined) return undefined;

  // The group with each of its instances (one row with no instance when it has none), and the
  // region each runs in.
  const rows = await db
    .select({
      groupRegion: vmGroups.region,
      groupDatacenterRegion: groupDatacenter.region,
      instanceId: instances.id,
      ordinal: instances.ordinal,
      state: instances.state,
      networkIp: instances.networkIp,
      retiring: instances.retiring,
      region: instanceDatacenter.region,
    })
    .from(vmGroups)
    .leftJoin(groupDatacenter, eq(groupDatacenter.name, vmGroups.datacenter))
    .leftJoin(instances, eq(instances.vmGroupId, vmGroups.id))
    .leftJoin(instanceDatacenter, eq(instanceDatacenter.name, instances.datacenter))
    .where(and(eq(vmGroups.projectId, project.id), eq(vmGroups.name, parsed.group)));
  const [group] = rows;
  if (!group) return undefined;
  const members = rows.filter((row) => row.instanceId !== null);
  const inRegion = members
    .filter((row) => row.region === parsed.region)
    .sort((a, b) => (a.ordinal ?? 0) - (b.ordinal ?? 0) || Number(a.retiring) - Number(b.retiring));
  const answered = canonicalName(name);

  if (ordinal !== undefined) {
    // During a rolling update an ordinal has two rows: the replacement answers, else the one it replaces.
    const instance = inRegion.find((row) => row.ordinal === ordinal);
    if (!instance) return undefined;
    return { name: answered, addresses: instance.networkIp ? [instance.networkIp] : [] };
  }

  const groupRegion = group.groupRegion ?? group.groupDatacenterRegion;
  if (members.length > 0 ? inRegion.length === 0 : groupRegion !== parsed.region) return undefined;
  const addresses = inRegion.flatMap((row) =>
    row.state === "ready" && row.networkIp ? [row.networkIp] : [],
  );
  return { name: answered, addresses: [...new Set(addresses)] };
}
