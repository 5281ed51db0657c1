// What the control plane asks a manager to run for one instance of a group: its machine, image
// and metadata, its place on the group's network (with the network's firewall, so its guest is
// never up unguarded) and, for a group that exposes ports, what the manager needs to give them
// endpoints: the group they spread over and the datacenter's gateway on the network. It also
// carries the instance's internal name, the hostname its guest is given.
import { eq } from "drizzle-orm";
import { internalName, parseInternalName } from "../../schemas/internal-names.ts";
import type { ManagerInstanceSpec } from "../../schemas/manager-instances.ts";
import { gatewayInDatacenter, networkOfInstance } from "../catalog/addresses.ts";
import { datacenters, type instances, projects, type vmGroups } from "../catalog/schema.ts";
import type { Services } from "../env.ts";
import { firewallOfNetwork } from "./firewalls.ts";

type Group = typeof vmGroups.$inferSelect;
type InstanceRow = typeof instances.$inferSelect;

function specOf(
  group: Group,
  row: InstanceRow,
  version: number,
  metadata: Record<string, string>,
  network: ManagerInstanceSpec["network"],
  hostname: string | undefined,
): ManagerInstanceSpec {
  return {
    instance_id: row.id,
    name: instanceNameOf(group, row),
    vm_group: group.name,
    vm_group_id: group.id,
    image_id: group.imageId,
    image_version: version,
    vcpus: group.vcpus,
    memory_mb: group.memoryMb,
    metadata,
    ...(network ? { network } : {}),
    ...(group.expose.length > 0 ? { expose: group.expose } : {}),
    ...(hostname ? { hostname } : {}),
    // The group's setting when the spec is sent: a change reaches the instances placed after it.
    ...(group.spreadHosts ? { spread_hosts: true } : {}),
  };
}

function instanceNameOf(group: Group, row: InstanceRow): string {
  return `${group.name}-${row.ordinal}`;
}

/**
 * INSTANCE.GROUP.REGION.PROJECT.globalvm.internal, REGION being its datacenter's; undefined for
 * a name DNS cannot carry (a label over 63 characters, or over 253 in all).
 */
async function hostnameOf(services: Services, group: Group, row: InstanceRow): Promise<string | undefined> {
  const [place] = await services.db
    .select({ project: projects.name, region: datacenters.region })
    .from(projects)
    .innerJoin(datacenters, eq(datacenters.name, row.datacenter))
    .where(eq(projects.id, group.projectId))
    .limit(1);
  if (!place) return undefined;
  const name = internalName({
    instance: instanceNameOf(group, row),
    group: group.name,
    region: place.region,
    project: place.project,
  });
  return name.length <= 253 && parseInternalName(name) ? name : undefined;
}

async function networkSpecOf(
  services: Services,
  group: Group,
  row: InstanceRow,
): Promise<ManagerInstanceSpec["network"]> {
  if (!row.networkId || !row.networkIp) return undefined;
  const network = await networkOfInstance(services.db, row.networkId);
  if (!network) return undefined;
  const firewall = await firewallOfNetwork(services, network.id);
  // Only endpoints need the gateway: a manager gives the address to the network's bridge then.
  const gateway =
    group.expose.length > 0 ? await gatewayInDatacenter(services.db, network.id, row.datacenter) : undefined;
  return {
    id: network.id,
    vni: network.vni,
    address: row.networkIp,
    prefix_length: network.prefixLength,
    ...(gateway ? { gateway } : {}),
    ...(firewall ? { firewall } : {}),
  };
}

/** The spec of `row` as the catalog records it now. */
export async function instanceSpecOf(
  services: Services,
  group: Group,
  row: InstanceRow,
  version: number,
  metadata: Record<string, string>,
): Promise<ManagerInstanceSpec> {
  const [network, hostname] = await Promise.all([
    networkSpecOf(services, group, row),
    hostnameOf(services, group, row),
  ]);
  return specOf(group, row, version, metadata, network, hostname);
}
