// The global catalog: which images exist, where each version is stored, which VM groups and
// instances run where, and the long-running operations that change them.
import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  check,
  foreignKey,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
} from "drizzle-orm/pg-core";
import type { ExposedPort, ReportedEndpoint } from "../../schemas/endpoints.ts";
import { FIREWALL_ACTIONS, FIREWALL_PROTOCOLS } from "../../schemas/firewall-rules.ts";
import { HOST_ARCHITECTURES, HOST_STATES } from "../../schemas/hosts.ts";
import { VERSION_STATES } from "../../schemas/image-versions.ts";
import { IMAGE_FORMATS, IMAGE_STATES, REPLICA_STATES } from "../../schemas/images.ts";
import { INSTANCE_STATES } from "../../schemas/instances.ts";
import type { OperationProgress } from "../../schemas/operations.ts";
import { OPERATION_KINDS, OPERATION_STATES } from "../../schemas/operations.ts";
import { DRIVER_KINDS } from "../../schemas/regions.ts";
import type { MetadataReference, PlacementPolicy } from "../../schemas/vm-groups.ts";
import { DISTRIBUTIONS, VM_GROUP_STATES } from "../../schemas/vm-groups.ts";

function oneOf(column: string, values: readonly string[]) {
  return sql.raw(`${column} in (${values.map((v) => `'${v}'`).join(", ")})`);
}

const createdAt = () => timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow();
const updatedAt = () => timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow();
const bytes = (name: string) => bigint(name, { mode: "number" });

/**
 * A reported endpoint and the datacenter that reported it. Rows written before groups could span
 * datacenters have no datacenter: theirs is the group's one datacenter.
 */
export type StoredEndpoint = ReportedEndpoint & { datacenter?: string };

export const projects = pgTable(
  "projects",
  {
    id: text("id").primaryKey(),
    name: text("name").notNull().unique(),
    /** Quotas an admin set; null is the control plane's default (catalog/quotas.ts). */
    quotaStorageBytes: bytes("quota_storage_bytes"),
    quotaImages: integer("quota_images"),
    quotaInstances: integer("quota_instances"),
    quotaVcpus: integer("quota_vcpus"),
    createdAt: createdAt(),
  },
  (t) => [
    check(
      "projects_quotas_valid",
      sql`${t.quotaStorageBytes} >= 0 and ${t.quotaImages} >= 0 and ${t.quotaInstances} >= 0 and ${t.quotaVcpus} >= 0`,
    ),
  ],
);

export const apiTokens = pgTable(
  "api_tokens",
  {
    id: text("id").primaryKey(),
    name: text("name").notNull(),
    projectId: text("project_id").references(() => projects.id, { onDelete: "cascade" }),
    secretHash: text("secret_hash").notNull().unique(),
    scopes: text("scopes").array().notNull(),
    bootstrap: boolean("bootstrap").notNull().default(false),
    /** Manager credentials are bound to the one datacenter (and its region) they may register and report for. */
    region: text("region"),
    datacenter: text("datacenter"),
    createdAt: createdAt(),
  },
  (t) => [
    index("api_tokens_project_idx").on(t.projectId, t.id),
    check(
      "api_tokens_scopes_valid",
      sql`${t.scopes} <@ array['read','write','admin','metrics','manager']::text[] and cardinality(${t.scopes}) > 0`,
    ),
    check("api_tokens_admin_has_no_project", sql`not ('admin' = any(${t.scopes})) or ${t.projectId} is null`),
    check(
      "api_tokens_manager_bound",
      sql`('manager' = any(${t.scopes})) = (${t.datacenter} is not null and ${t.region} is not null and ${t.projectId} is null)`,
    ),
  ],
);

/**
 * Keys that sign transfer and instance tokens; managers fetch the public halves from
 * /.well-known/jwks.json. The private half is stored only wrapped (AES-256-GCM) with a key that
 * is not in the catalog (api/signing-key-wrap.ts). The newest key whose signs_from has come
 * signs; the one before it verifies until the tokens it signed have expired.
 */
export const signingKeys = pgTable("signing_keys", {
  kid: text("kid").primaryKey(),
  algorithm: text("algorithm").notNull(),
  publicJwk: jsonb("public_jwk").$type<Record<string, unknown>>().notNull(),
  wrappedPrivateJwk: text("wrapped_private_jwk").notNull(),
  signsFrom: timestamp("signs_from", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  createdAt: createdAt(),
});

export const regions = pgTable("regions", {
  name: text("name").primaryKey(),
  displayName: text("display_name").notNull(),
  createdAt: createdAt(),
});

export const datacenters = pgTable(
  "datacenters",
  {
    name: text("name").primaryKey(),
    region: text("region")
      .notNull()
      .references(() => regions.name),
    managerUrl: text("manager_url"),
    /** The manager's address toward other datacenters, when it attaches guests to networks. */
    underlayAddress: text("underlay_address"),
    driver: text("driver").notNull(),
    capacityVcpus: integer("capacity_vcpus").notNull(),
    capacityMemoryMb: integer("capacity_memory_mb").notNull(),
    capacityDiskBytes: bytes("capacity_disk_bytes").notNull(),
    freeVcpus: integer("free_vcpus"),
    freeMemoryMb: integer("free_memory_mb"),
    freeDiskBytes: bytes("free_disk_bytes"),
    chunkCount: integer("chunk_count"),
    imageCount: integer("image_count"),
    lastHeartbeatAt: timestamp("last_heartbeat_at", { withTimezone: true, mode: "date" }),
    createdAt: createdAt(),
  },
  (t) => [
    index("datacenters_region_idx").on(t.region),
    check("datacenters_driver_valid", oneOf("driver", DRIVER_KINDS)),
  ],
);

/**
 * The hosts of a datacenter, as its manager's last heartbeat reported them: the set is replaced
 * by each heartbeat that names hosts, and emptied by one that names none (a manager without
 * host agents runs its guests itself). Read-only facts: the manager decides placement on them.
 */
export const hosts = pgTable(
  "hosts",
  {
    datacenter: text("datacenter")
      .notNull()
      .references(() => datacenters.name, { onDelete: "cascade" }),
    name: text("name").notNull(),
    state: text("state").notNull(),
    arch: text("arch").notNull(),
    capacityVcpus: integer("capacity_vcpus").notNull(),
    capacityMemoryMb: integer("capacity_memory_mb").notNull(),
    capacityDiskBytes: bytes("capacity_disk_bytes").notNull(),
    freeVcpus: integer("free_vcpus").notNull(),
    freeMemoryMb: integer("free_memory_mb").notNull(),
    freeDiskBytes: bytes("free_disk_bytes").notNull(),
    instanceCount: integer("instance_count").notNull(),
    cachedVersions: integer("cached_versions").notNull(),
    cacheBytes: bytes("cache_bytes").notNull(),
    lastSeenAt: timestamp("last_seen_at", { withTimezone: true, mode: "date" }).notNull(),
    /** Where the host's guest-network tunnels end; null: its guests run isolated. */
    underlayAddress: text("underlay_address"),
  },
  (t) => [
    primaryKey({ columns: [t.datacenter, t.name] }),
    check("hosts_state_valid", oneOf("state", HOST_STATES)),
    check("hosts_arch_valid", oneOf("arch", HOST_ARCHITECTURES)),
  ],
);

/**
 * A project's private IPv4 network. It spans every region; each datacenter gets a subnet of it
 * when the network first needs one there. `vni` names the network on the wire between hosts
 * (its VXLAN identifier), unique across projects.
 */
export const networks = pgTable(
  "networks",
  {
    id: text("id").primaryKey(),
    projectId: text("project_id")
      .notNull()
      .references(() => projects.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    cidr: text("cidr").notNull(),
    subnetPrefixLength: integer("subnet_prefix_length").notNull(),
    vni: integer("vni").notNull().generatedAlwaysAsIdentity({ startWith: 4096 }),
    labels: jsonb("labels").$type<Record<string, string>>().notNull().default({}),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex("networks_project_name_uq").on(t.projectId, t.name),
    uniqueIndex("networks_vni_uq").on(t.vni),
    index("networks_project_id_idx").on(t.projectId, t.id),
    check("networks_vni_range", sql`${t.vni} between 1 and 16777215`),
    check("networks_subnet_prefix_valid", sql`${t.subnetPrefixLength} between 8 and 29`),
  ],
);

/**
 * An ingress rule of a network (schemas/firewall-rules.ts). The source is an IPv4 block or a
 * VM group's name, resolved to the group's instances' addresses each time the rules are sent to
 * the managers, so a group's new instances are matched without touching the rule.
 */
export const firewallRules = pgTable(
  "firewall_rules",
  {
    id: text("id").primaryKey(),
    networkId: text("network_id")
      .notNull()
      .references(() => networks.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    description: text("description").notNull().default(""),
    priority: integer("priority").notNull(),
    action: text("action").notNull(),
    protocol: text("protocol").notNull(),
    ports: jsonb("ports").$type<string[]>().notNull().default([]),
    sourceCidr: text("source_cidr"),
    sourceVmGroup: text("source_vm_group"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex("firewall_rules_network_name_uq").on(t.networkId, t.name),
    check("firewall_rules_priority_valid", sql`${t.priority} between 0 and 65535`),
    check("firewall_rules_action_valid", oneOf("action", FIREWALL_ACTIONS)),
    check("firewall_rules_protocol_valid", oneOf("protocol", FIREWALL_PROTOCOLS)),
    check("firewall_rules_one_source", sql`(${t.sourceCidr} is null) <> (${t.sourceVmGroup} is null)`),
  ],
);

/**
 * The part of a network one datacenter gives addresses from, made when the network first has an
 * instance there: block `index` of the network's range, `subnet_prefix_length` long. `cursor` is
 * the offset of the last host given out; the next one is searched after it, so a released
 * address is not given again until the subnet has gone round once.
 */
export const networkSubnets = pgTable(
  "network_subnets",
  {
    networkId: text("network_id")
      .notNull()
      .references(() => networks.id, { onDelete: "cascade" }),
    datacenter: text("datacenter")
      .notNull()
      .references(() => datacenters.name),
    index: integer("index").notNull(),
    cidr: text("cidr").notNull(),
    cursor: integer("cursor").notNull().default(1),
    createdAt: createdAt(),
  },
  (t) => [
    primaryKey({ columns: [t.networkId, t.datacenter] }),
    uniqueIndex("network_subnets_index_uq").on(t.networkId, t.index),
    check("network_subnets_index_valid", sql`${t.index} >= 0`),
  ],
);

export const images = pgTable(
  "images",
  {
    id: text("id").primaryKey(),
    projectId: text("project_id")
      .notNull()
      .references(() => projects.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    format: text("format").notNull(),
    originRegion: text("origin_region")
      .notNull()
      .references(() => regions.name),
    state: text("state").notNull().default("awaiting-upload"),
    /** The version groups that follow the image run: the pinned one, else the newest active (see currentVersionOf). */
    currentVersion: integer("current_version"),
    /** The version set as current by hand (a rollback); null follows the newest active version. */
    pinnedVersion: integer("pinned_version"),
    /** Groups naming the family boot the newest active image of it in the project. */
    family: text("family"),
    /** Projects that may read the image and boot groups from it, never change it. */
    members: text("members").array().notNull().default(sql`'{}'::text[]`),
    labels: jsonb("labels").$type<Record<string, string>>().notNull().default({}),
    replicateTo: text("replicate_to").array().notNull().default(sql`'{}'::text[]`),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex("images_project_name_uq").on(t.projectId, t.name),
    index("images_project_id_idx").on(t.projectId, t.id),
    index("images_project_family_idx").on(t.projectId, t.family),
    index("images_members_idx").using("gin", t.members),
    check("images_format_valid", oneOf("format", IMAGE_FORMATS)),
    check("images_state_valid", oneOf("state", IMAGE_STATES)),
  ],
);

export const imageVersions = pgTable(
  "image_versions",
  {
    imageId: text("image_id")
      .notNull()
      .references(() => images.id, { onDelete: "cascade" }),
    version: integer("version").notNull(),
    size: bytes("size").notNull(),
    digest: text("digest").notNull(),
    /** The upload's manifest digest (common/image-format/manifest-digest.ts); null before it existed. */
    manifestDigest: text("manifest_digest"),
    chunkCount: integer("chunk_count"),
    /** As set by hand or by a scheduled time that has passed (see versionStateAt). */
    state: text("state").notNull().default("active"),
    deprecateAt: timestamp("deprecate_at", { withTimezone: true, mode: "date" }),
    obsoleteAt: timestamp("obsolete_at", { withTimezone: true, mode: "date" }),
    createdAt: createdAt(),
  },
  (t) => [
    primaryKey({ columns: [t.imageId, t.version] }),
    check("image_versions_version_positive", sql`${t.version} >= 1`),
    check("image_versions_state_valid", oneOf("state", VERSION_STATES)),
    check("image_versions_digest_format", sql`${t.digest} ~ '^sha256:[0-9a-f]{64}$'`),
  ],
);

export const imageReplicas = pgTable(
  "image_replicas",
  {
    imageId: text("image_id").notNull(),
    version: integer("version").notNull(),
    datacenter: text("datacenter")
      .notNull()
      .references(() => datacenters.name),
    localId: text("local_id"),
    state: text("state").notNull().default("pending"),
    /** Bytes of the version the datacenter holds, of `bytesTotal` (the version's size); never more. */
    bytesDone: bytes("bytes_done").notNull().default(0),
    bytesTotal: bytes("bytes_total"),
    /** Chunk data the datacenter's latest pull of the version received: what crossed the network. */
    bytesReceived: bytes("bytes_received").notNull().default(0),
    /** Made for a VM group rather than a replication policy; collected when unused. */
    onDemand: boolean("on_demand").notNull().default(false),
    lastUsedAt: timestamp("last_used_at", { withTimezone: true, mode: "date" }),
    updatedAt: updatedAt(),
  },
  (t) => [
    primaryKey({ columns: [t.imageId, t.version, t.datacenter] }),
    foreignKey({
      columns: [t.imageId, t.version],
      foreignColumns: [imageVersions.imageId, imageVersions.version],
    }).onDelete("cascade"),
    uniqueIndex("image_replicas_local_id_uq").on(t.datacenter, t.localId),
    index("image_replicas_datacenter_idx").on(t.datacenter),
    check("image_replicas_state_valid", oneOf("state", REPLICA_STATES)),
  ],
);

export const vmGroups = pgTable(
  "vm_groups",
  {
    id: text("id").primaryKey(),
    projectId: text("project_id")
      .notNull()
      .references(() => projects.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    imageId: text("image_id")
      .notNull()
      .references(() => images.id),
    imageVersion: integer("image_version"),
    /** Set when the group names a family: imageId is then what the family resolved to last. */
    imageFamily: text("image_family"),
    /** The network its instances join; fixed for the group's life (another network is another group). */
    networkId: text("network_id")
      .notNull()
      .references(() => networks.id),
    region: text("region").references(() => regions.name),
    placement: jsonb("placement").$type<PlacementPolicy>(),
    datacenter: text("datacenter").references(() => datacenters.name),
    size: integer("size").notNull(),
    vcpus: integer("vcpus").notNull(),
    memoryMb: integer("memory_mb").notNull(),
    metadata: jsonb("metadata").$type<Record<string, string>>().notNull().default({}),
    metadataFrom: jsonb("metadata_from").$type<Record<string, MetadataReference>>().notNull().default({}),
    labels: jsonb("labels").$type<Record<string, string>>().notNull().default({}),
    /** Ports reachable from outside the network; fixed at creation. */
    expose: jsonb("expose").$type<ExposedPort[]>().notNull().default([]),
    /**
     * Where each datacenter's manager last reported those ports reachable; a datacenter's go when
     * no instance of the group is left there.
     */
    endpoints: jsonb("endpoints").$type<StoredEndpoint[]>().notNull().default([]),
    /** No two instances on one host of the datacenter; applies to instances placed after a change. */
    spreadHosts: boolean("spread_hosts").notNull().default(false),
    /** Set for a regional group: its instances spread over its region's datacenters (datacenter stays null). */
    distribution: text("distribution"),
    /** The datacenters its instances run in, sorted: the orchestrator's record, empty until placed. */
    datacenters: text("datacenters").array().notNull().default(sql`'{}'::text[]`),
    state: text("state").notNull().default("pending"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex("vm_groups_project_name_uq").on(t.projectId, t.name),
    index("vm_groups_project_id_idx").on(t.projectId, t.id),
    index("vm_groups_image_idx").on(t.imageId),
    check("vm_groups_state_valid", oneOf("state", VM_GROUP_STATES)),
    check("vm_groups_size_valid", sql`${t.size} >= 0`),
    check("vm_groups_machine_valid", sql`${t.vcpus} >= 1 and ${t.memoryMb} >= 64`),
    check("vm_groups_one_placement", sql`(${t.region} is null) <> (${t.placement} is null)`),
    check("vm_groups_distribution_valid", oneOf("distribution", DISTRIBUTIONS)),
    check(
      "vm_groups_distribution_regional",
      sql`${t.distribution} is null or (${t.region} is not null and ${t.datacenter} is null)`,
    ),
  ],
);

export const instances = pgTable(
  "instances",
  {
    id: text("id").primaryKey(),
    vmGroupId: text("vm_group_id")
      .notNull()
      .references(() => vmGroups.id, { onDelete: "cascade" }),
    ordinal: integer("ordinal").notNull(),
    datacenter: text("datacenter")
      .notNull()
      .references(() => datacenters.name),
    imageVersion: integer("image_version"),
    localId: text("local_id"),
    state: text("state").notNull().default("pending"),
    stateReason: text("state_reason"),
    /** What the manager reports the guest reachable at (null while its datacenter does not attach guests to networks). */
    address: text("address"),
    /** The datacenter host running the guest, as its manager reports it (null: the manager runs it itself). */
    host: text("host"),
    /** The group's network, copied so that an address is unique per network by an index. */
    networkId: text("network_id").references(() => networks.id),
    /** The address the catalog gave the instance in its datacenter's subnet of the network. */
    networkIp: text("network_ip"),
    guestAttributes: jsonb("guest_attributes").$type<Record<string, string>>().notNull().default({}),
    bootLogTail: text("boot_log_tail"),
    /**
     * Being replaced by a newer instance of the same ordinal (a rolling update): it keeps
     * running until its replacement is ready, so one ordinal may briefly have two rows.
     */
    retiring: boolean("retiring").notNull().default(false),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex("instances_group_ordinal_uq").on(t.vmGroupId, t.ordinal).where(sql`not ${t.retiring}`),
    uniqueIndex("instances_network_ip_uq").on(t.networkId, t.networkIp),
    index("instances_datacenter_idx").on(t.datacenter),
    check("instances_state_valid", oneOf("state", INSTANCE_STATES)),
  ],
);

export const operations = pgTable(
  "operations",
  {
    id: text("id").primaryKey(),
    projectId: text("project_id").references(() => projects.id, { onDelete: "cascade" }),
    kind: text("kind").notNull(),
    targetType: text("target_type").notNull(),
    targetId: text("target_id").notNull(),
    state: text("state").notNull().default("pending"),
    progress: jsonb("progress")
      .$type<OperationProgress>()
      .notNull()
      .default({ step: null, bytes_done: 0, bytes_total: null, children: [] }),
    /** What the operation was asked to do, for the worker that runs it. */
    input: jsonb("input").$type<Record<string, unknown>>().notNull().default({}),
    error: jsonb("error").$type<{ code: string; message: string }>(),
    result: jsonb("result").$type<Record<string, unknown>>(),
    cancelRequested: boolean("cancel_requested").notNull().default(false),
    /** The token of the attempt that may write to this row (a newer attempt replaces it). */
    leaseOwner: text("lease_owner"),
    attempts: integer("attempts").notNull().default(0),
    /** The W3C trace ID of the request that created it: its log lines and manager calls carry it. */
    traceId: text("trace_id"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    index("operations_project_id_idx").on(t.projectId, t.id),
    index("operations_target_idx").on(t.targetId),
    check("operations_state_valid", oneOf("state", OPERATION_STATES)),
    check("operations_kind_valid", oneOf("kind", OPERATION_KINDS)),
  ],
);

/** First responses of create calls, replayed to retries that carry the same Idempotency-Key. */
export const idempotencyKeys = pgTable(
  "idempotency_keys",
  {
    principal: text("principal").notNull(),
    key: text("key").notNull(),
    requestHash: text("request_hash").notNull(),
    status: integer("status").notNull(),
    body: jsonb("body").notNull(),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.principal, t.key] })],
);
