// Catalog rows → API shapes. One place, so every route answers the same way.

import type { Host } from "../../schemas/datacenter-hosts.ts";
import { type ExposedPort, endpointUrl } from "../../schemas/endpoints.ts";
import type { FirewallRule } from "../../schemas/firewall-rules.ts";
import type { Image, ImageReplica, ReplicaReason } from "../../schemas/images.ts";
import type { Instance } from "../../schemas/instances.ts";
import type { Network } from "../../schemas/networks.ts";
import type { Project, Token } from "../../schemas/projects.ts";
import type { Datacenter, Region } from "../../schemas/regions.ts";
import type { VmGroup, VmGroupEndpoint } from "../../schemas/vm-groups.ts";
import { datacenterStatus } from "./datacenter-status.ts";
import { quotasOf } from "./quotas.ts";
import type {
  apiTokens,
  datacenters,
  firewallRules,
  hosts,
  imageReplicas,
  images,
  instances,
  networks,
  projects,
  regions,
  StoredEndpoint,
  vmGroups,
} from "./schema.ts";

export function toNetwork(row: typeof networks.$inferSelect): Network {
  return {
    id: row.id,
    name: row.name,
    cidr: row.cidr,
    subnet_prefix_length: row.subnetPrefixLength,
    labels: row.labels,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  };
}

export function toFirewallRule(row: typeof firewallRules.$inferSelect): FirewallRule {
  return {
    id: row.id,
    network_id: row.networkId,
    name: row.name,
    description: row.description,
    direction: "ingress",
    priority: row.priority,
    action: row.action as FirewallRule["action"],
    protocol: row.protocol as FirewallRule["protocol"],
    ports: row.ports,
    source: row.sourceCidr !== null ? { cidr: row.sourceCidr } : { vm_group: row.sourceVmGroup ?? "" },
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  };
}

export function toProject(row: typeof projects.$inferSelect): Project {
  return { id: row.id, name: row.name, quotas: quotasOf(row), created_at: row.createdAt.toISOString() };
}

export function toToken(row: typeof apiTokens.$inferSelect): Token {
  return {
    id: row.id,
    name: row.name,
    project_id: row.projectId,
    scopes: row.scopes as Token["scopes"],
    created_at: row.createdAt.toISOString(),
  };
}

export function toRegion(row: typeof regions.$inferSelect, datacenterNames: string[]): Region {
  return {
    name: row.name,
    display_name: row.displayName,
    datacenters: datacenterNames,
    created_at: row.createdAt.toISOString(),
  };
}

export function toDatacenter(row: typeof datacenters.$inferSelect, now: Date): Datacenter {
  const free =
    row.freeVcpus === null || row.freeMemoryMb === null || row.freeDiskBytes === null
      ? null
      : { vcpus: row.freeVcpus, memory_mb: row.freeMemoryMb, disk_bytes: row.freeDiskBytes };
  return {
    name: row.name,
    region: row.region,
    manager_url: row.managerUrl,
    driver: row.driver as Datacenter["driver"],
    capacity: {
      vcpus: row.capacityVcpus,
      memory_mb: row.capacityMemoryMb,
      disk_bytes: row.capacityDiskBytes,
    },
    free,
    chunk_count: row.chunkCount,
    image_count: row.imageCount,
    status: datacenterStatus(row.lastHeartbeatAt, now),
    last_heartbeat_at: row.lastHeartbeatAt?.toISOString() ?? null,
    created_at: row.createdAt.toISOString(),
  };
}

/**
 * A host as its manager last reported it; down whatever the report said while its datacenter
 * is not up, since nobody has vouched for it since.
 */
export function toHost(row: typeof hosts.$inferSelect, datacenterUp: boolean): Host {
  return {
    name: row.name,
    datacenter: row.datacenter,
    state: datacenterUp ? (row.state as Host["state"]) : "down",
    arch: row.arch as Host["arch"],
    capacity: {
      vcpus: row.capacityVcpus,
      memory_mb: row.capacityMemoryMb,
      disk_bytes: row.capacityDiskBytes,
    },
    free: { vcpus: row.freeVcpus, memory_mb: row.freeMemoryMb, disk_bytes: row.freeDiskBytes },
    instance_count: row.instanceCount,
    cached_versions: row.cachedVersions,
    cache_bytes: row.cacheBytes,
    last_seen_at: row.lastSeenAt.toISOString(),
  };
}

/**
 * Why a replica exists: a copy made on demand (for a VM group, or asked for outside the
 * policy) is `on_demand` wherever it is; otherwise the origin region's copy is `origin` and a
 * copy in a region of `replicate_to` is `replicate_to`. A policy copy in a region the policy
 * no longer names (kept while a VM group uses it) is `on_demand` too.
 */
export function replicaReason(
  replica: { region: string; onDemand: boolean },
  image: { originRegion: string; replicateTo: readonly string[] },
): ReplicaReason {
  if (replica.onDemand) return "on_demand";
  if (replica.region === image.originRegion) return "origin";
  return image.replicateTo.includes(replica.region) ? "replicate_to" : "on_demand";
}

export function toImageReplica(
  row: typeof imageReplicas.$inferSelect,
  region: string,
  image: { originRegion: string; replicateTo: readonly string[] },
): ImageReplica {
  return {
    region,
    datacenter: row.datacenter,
    version: row.version,
    local_id: row.localId,
    state: row.state as ImageReplica["state"],
    reason: replicaReason({ region, onDemand: row.onDemand }, image),
    bytes_done: row.bytesDone,
    bytes_total: row.bytesTotal,
    updated_at: row.updatedAt.toISOString(),
  };
}

/** `viewer` is the project asking: another project's members are none of a member's business. */
export function toImage(
  row: typeof images.$inferSelect,
  current: { size: number; digest: string } | undefined,
  replicas: ImageReplica[],
  viewer: string,
): Image {
  return {
    id: row.id,
    project_id: row.projectId,
    name: row.name,
    format: row.format as Image["format"],
    origin_region: row.originRegion,
    state: row.state as Image["state"],
    version: row.currentVersion,
    size: current?.size ?? null,
    digest: current?.digest ?? null,
    pinned_version: row.pinnedVersion,
    family: row.family,
    members: viewer === row.projectId ? row.members : [],
    labels: row.labels,
    replicate_to: row.replicateTo,
    replicas,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  };
}

export function toVmGroup(row: typeof vmGroups.$inferSelect): VmGroup {
  return {
    id: row.id,
    project_id: row.projectId,
    name: row.name,
    image: row.imageId,
    image_family: row.imageFamily,
    image_version: row.imageVersion,
    network: row.networkId,
    region: row.region,
    placement: row.placement,
    size: row.size,
    machine: { vcpus: row.vcpus, memory_mb: row.memoryMb },
    metadata: row.metadata,
    metadata_from: row.metadataFrom,
    labels: row.labels,
    expose: row.expose,
    spread_hosts: row.spreadHosts,
    distribution: row.distribution as VmGroup["distribution"],
    datacenter: row.datacenter,
    datacenters: row.datacenters,
    state: row.state as VmGroup["state"],
    endpoints: endpointsOf(row.expose, row.endpoints, row.datacenter),
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  };
}

/**
 * The exposed ports each datacenter's manager has given an address: in the order they were
 * exposed, and by datacenter for each port.
 */
function endpointsOf(
  expose: ExposedPort[],
  stored: StoredEndpoint[],
  groupDatacenter: string | null,
): VmGroupEndpoint[] {
  return expose.flatMap(({ port, protocol }) =>
    stored.flatMap((endpoint) => {
      const datacenter = endpoint.datacenter ?? groupDatacenter;
      if (endpoint.port !== port || endpoint.protocol !== protocol || !datacenter) return [];
      return [{ port, protocol, address: endpoint.address, url: endpointUrl(endpoint), datacenter }];
    }),
  );
}

export function toInstance(row: typeof instances.$inferSelect, groupName: string): Instance {
  return {
    id: row.id,
    vm_group_id: row.vmGroupId,
    name: `${groupName}-${row.ordinal}`,
    ordinal: row.ordinal,
    datacenter: row.datacenter,
    image_version: row.imageVersion,
    local_id: row.localId,
    state: row.state as Instance["state"],
    state_reason: row.stateReason,
    address: row.address,
    network_ip: row.networkIp,
    host: row.host,
    guest_attributes: row.guestAttributes,
    boot_log_tail: row.bootLogTail,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  };
}
