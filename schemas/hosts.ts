// Hosts: the machines of one datacenter that run its guests. A host agent registers with its
// datacenter's manager, then syncs: it says what it has (free capacity, cached image versions,
// its guests' states) and is answered with what it should run (its assignments). The manager
// decides placement (regional-manager/hosts/scheduler.ts); the agent only converges on the
// answer, so a restarted agent re-adopts what it runs and stops what it no longer should.
// The control plane sees hosts through the manager's heartbeat and shows them read-only.

import { z } from "@hono/zod-openapi";
import { CapacitySchema, idSchema, NameSchema, TimestampSchema } from "./common.ts";
import { ManagerNetworkFirewallSchema, MetadataValuesSchema } from "./manager-instances.ts";
import { MAX_EXPOSED_PORTS } from "./plain.ts";

const Ipv4Schema = z.string().regex(/^\d{1,3}(\.\d{1,3}){3}$/, "an IPv4 address");

export const HOST_STATES = ["up", "down"] as const;
export const HostStateSchema = z.enum(HOST_STATES);
export type HostState = z.infer<typeof HostStateSchema>;

export const HOST_ARCHITECTURES = ["x86_64", "aarch64"] as const;
export const HostArchitectureSchema = z.enum(HOST_ARCHITECTURES);
export type HostArchitecture = z.infer<typeof HostArchitectureSchema>;

export const BOOTABLE_FORMATS = ["raw", "qcow2"] as const;

/** An agent introduces itself (PUT /v1/hosts/{name} on its manager, with a manager credential). */
export const HostRegistrationSchema = z
  .strictObject({
    capacity: CapacitySchema.strict(),
    arch: HostArchitectureSchema,
    formats: z.array(z.enum(BOOTABLE_FORMATS)).min(1),
    /** The most bytes the agent's image cache keeps (least recently used versions go first). */
    cache_limit_bytes: z.number().int().min(0),
    /**
     * The host's address on the underlay, where guest-network tunnels end: present when the
     * agent attaches its guests to their networks (else they run isolated).
     */
    underlay_address: Ipv4Schema.optional(),
  })
  .openapi("HostRegistration");
export type HostRegistration = z.infer<typeof HostRegistrationSchema>;

/** The manager's answer to a registration: the session the agent syncs with. */
export const HostSessionSchema = z
  .object({
    host: NameSchema,
    /** Bearer token of this registration: syncs, and chunk reads from the manager's store. */
    session_token: z.string(),
    /** How often the agent syncs when nothing changes. */
    sync_interval_ms: z.number().int().min(100),
    /** A host not heard from for this long is down: its instances are placed again elsewhere. */
    down_after_ms: z.number().int().min(100),
  })
  .openapi("HostSession");
export type HostSession = z.infer<typeof HostSessionSchema>;

/** The image version a host boots an assignment from, and how to check what it fetched. */
export const HostImageSchema = z
  .strictObject({
    image_id: idSchema("image"),
    version: z.number().int().min(1),
    format: z.enum(BOOTABLE_FORMATS),
    /** sha256:<hex> of the whole version. */
    digest: z.string(),
    size: z.number().int().min(0),
  })
  .openapi("HostImage");
export type HostImage = z.infer<typeof HostImageSchema>;

export const HOST_DESIRED_STATES = ["running", "stopped"] as const;

/** An instance's place on its network, for a host that attaches guests to networks. */
export const HostNetworkInterfaceSchema = z
  .strictObject({
    network: idSchema("network"),
    vni: z.number().int().min(1).max(16_777_215),
    address: Ipv4Schema,
    prefix_length: z.number().int().min(8).max(30),
    /**
     * Set when the instance's group exposes ports: the datacenter's gateway on the network (on the
     * manager's host), the source its endpoint connections arrive from, already judged by the
     * network's firewall there, and the guest ports they go to.
     */
    endpoints: z
      .strictObject({
        gateway: Ipv4Schema,
        ports: z.array(z.number().int().min(1).max(65_535)).min(1).max(MAX_EXPOSED_PORTS),
      })
      .optional(),
  })
  .openapi("HostNetworkInterface");
export type HostNetworkInterface = z.infer<typeof HostNetworkInterfaceSchema>;

/** One instance a host should run (or keep stopped). */
export const HostAssignmentSchema = z
  .strictObject({
    instance_id: idSchema("instance"),
    name: z.string().min(1).max(128),
    hostname: z.string().max(253).optional(),
    vm_group: NameSchema,
    vm_group_id: idSchema("vmGroup").optional(),
    region: NameSchema,
    datacenter: NameSchema,
    image: HostImageSchema,
    vcpus: z.number().int().min(1).max(256),
    memory_mb: z.number().int().min(64),
    metadata: MetadataValuesSchema,
    desired: z.enum(HOST_DESIRED_STATES),
    /**
     * Rises each time the manager recreates the instance (its guest stopped by itself, or it was
     * moved here from a host that went down): a guest of an older generation is replaced.
     */
    generation: z.number().int().min(0),
    /** Its NIC: the instance keeps its address wherever it is placed. Absent: it runs isolated. */
    network_interface: HostNetworkInterfaceSchema.optional(),
  })
  .openapi("HostAssignment");
export type HostAssignment = z.infer<typeof HostAssignmentSchema>;

export const HOST_INSTANCE_STATES = [
  "fetching-image",
  "starting",
  "running",
  "ready",
  "stopped",
  "failed",
] as const;

/** What a host says of one of its guests. */
export const HostInstanceStatusSchema = z
  .strictObject({
    instance_id: idSchema("instance"),
    state: z.enum(HOST_INSTANCE_STATES),
    reason: z.string().max(2000).nullable(),
    guest_attributes: z.record(z.string().max(256), z.string().max(65536)),
    pid: z.number().int().nullable(),
    /** The serial console's last bytes. */
    console_tail: z.string().max(16384),
  })
  .openapi("HostInstanceStatus");
export type HostInstanceStatus = z.infer<typeof HostInstanceStatusSchema>;

export const CachedVersionSchema = z
  .strictObject({ image_id: idSchema("image"), version: z.number().int().min(1) })
  .openapi("CachedVersion");
export type CachedVersion = z.infer<typeof CachedVersionSchema>;

/** An agent's sync (POST /v1/hosts/{name}/sync): what it has and runs now. */
export const HostSyncSchema = z
  .strictObject({
    free: CapacitySchema.strict(),
    cached: z.array(CachedVersionSchema).max(10_000),
    cache_bytes: z.number().int().min(0),
    instances: z.array(HostInstanceStatusSchema).max(1024),
    /** The assignments revision the agent last converged on: with `wait`, the answer waits for a newer one. */
    revision: z.number().int().min(0).optional(),
  })
  .openapi("HostSync");
export type HostSync = z.infer<typeof HostSyncSchema>;

export const HostSyncAnswerSchema = z
  .object({
    /** Rises whenever the host's assignments change. */
    revision: z.number().int().min(0),
    assignments: z.array(HostAssignmentSchema),
    /** For a host that attaches guests to networks: where its tunnels reach, and its networks' rules. */
    networks: z
      .object({
        /**
         * Underlay addresses of every other host with guests on networks (any datacenter's).
         * Absent while the manager does not know them yet (just restarted, before the control
         * plane answered): the host keeps its tunnels' peers as they are.
         */
        peers: z.array(Ipv4Schema).optional(),
        /** The firewall of each network the host's assignments are on. */
        firewalls: z.record(idSchema("network"), ManagerNetworkFirewallSchema),
      })
      .optional(),
  })
  .openapi("HostSyncAnswer");
export type HostSyncAnswer = z.infer<typeof HostSyncAnswerSchema>;

/** A host as its manager reports it to the control plane (in the heartbeat) and the API shows it. */
export const ReportedHostSchema = z
  .strictObject({
    name: NameSchema,
    state: HostStateSchema,
    arch: HostArchitectureSchema,
    capacity: CapacitySchema.strict(),
    free: CapacitySchema.strict(),
    instance_count: z.number().int().min(0),
    cached_versions: z.number().int().min(0),
    cache_bytes: z.number().int().min(0),
    last_seen_at: TimestampSchema,
    /** Where the host's guest-network tunnels end; absent: its guests run isolated. */
    underlay_address: Ipv4Schema.optional(),
  })
  .openapi("ReportedHost");
export type ReportedHost = z.infer<typeof ReportedHostSchema>;
