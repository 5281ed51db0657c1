// The shapes exchanged about running instances between the control plane and a regional
// manager: what the control plane asks a manager to run (its instance API), what the manager
// answers, and the state reports the manager sends back to the catalog.
import { z } from "@hono/zod-openapi";
import { idSchema, NameSchema } from "./common.ts";
import { ExposeSchema, ReportedEndpointSchema } from "./endpoints.ts";
import {
  FIREWALL_ACTIONS,
  FIREWALL_PROTOCOLS,
  MAX_RULES_PER_NETWORK,
  PortRangeSchema,
} from "./firewall-rules.ts";
import { parseCidr } from "./ipv4.ts";

export const MetadataValuesSchema = z
  .record(z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/, "metadata keys are letters, digits, _ . -"), z.string())
  .refine((values) => Object.keys(values).length <= 256, "at most 256 metadata keys");

const CidrSchema = z.string().superRefine((text, ctx) => {
  const cidr = parseCidr(text);
  if ("error" in cidr) ctx.addIssue({ code: "custom", message: cidr.error });
});

/**
 * A network's firewall as a manager enforces it: the rules in evaluation order with their
 * sources resolved to address blocks (a VM group's instances as /32s), and what a packet no
 * rule matches may come from. `revision` orders what the control plane sends: a manager keeps
 * the newest it was given.
 */
export const ManagerNetworkFirewallSchema = z
  .strictObject({
    revision: z.number().int().min(0),
    rules: z
      .array(
        z.strictObject({
          action: z.enum(FIREWALL_ACTIONS),
          protocol: z.enum(FIREWALL_PROTOCOLS),
          ports: z.array(PortRangeSchema).max(64),
          sources: z.array(CidrSchema).max(4096),
        }),
      )
      .max(MAX_RULES_PER_NETWORK),
    otherwise_allow: z.array(CidrSchema).max(16).openapi({
      description: "Sources a packet no rule matches is accepted from (the default network: its own range).",
    }),
  })
  .openapi("ManagerNetworkFirewall");
export type ManagerNetworkFirewall = z.infer<typeof ManagerNetworkFirewallSchema>;

/** The control plane asks a manager to create and start one instance of a VM group. */
/**
 * The instance's place on its network: the catalog's address, and what the manager needs to
 * carry its traffic (the network's VXLAN identifier, its prefix length, on-link for the guest).
 */
export const ManagerInstanceNetworkSchema = z
  .strictObject({
    id: idSchema("network"),
    vni: z.number().int().min(1).max(16_777_215),
    address: z.string().regex(/^\d{1,3}(\.\d{1,3}){3}$/, "an IPv4 address"),
    prefix_length: z.number().int().min(8).max(30),
    /**
     * The datacenter's own address on the network (its subnet's first host, reserved for it):
     * the source an endpoint's connections reach the guest from. Absent: the group has no endpoints.
     */
    gateway: z
      .string()
      .regex(/^\d{1,3}(\.\d{1,3}){3}$/, "an IPv4 address")
      .optional(),
    /** The network's rules when the instance is created, so its guest is never unguarded. */
    firewall: ManagerNetworkFirewallSchema.optional(),
  })
  .openapi("ManagerInstanceNetwork");

export const ManagerInstanceSpecSchema = z
  .strictObject({
    instance_id: idSchema("instance"),
    name: z.string().min(1).max(128),
    vm_group: NameSchema,
    image_id: idSchema("image"),
    image_version: z.number().int().min(1),
    vcpus: z.number().int().min(1).max(256),
    memory_mb: z
      .number()
      .int()
      .min(64)
      .max(1 << 22),
    metadata: MetadataValuesSchema.default({}),
    network: ManagerInstanceNetworkSchema.optional(),
    /** The group the instance belongs to: its endpoints are the group's, spread over its instances. */
    vm_group_id: idSchema("vmGroup").optional(),
    /** The group's exposed ports (needs `network` with a `gateway`). */
    expose: ExposeSchema.optional(),
    /**
     * The instance's internal name (INSTANCE.GROUP.REGION.PROJECT.globalvm.internal), served to
     * the guest as metadata `instance/hostname`. Absent: the instance has no internal name.
     */
    hostname: z.string().max(253).optional(),
    /**
     * Anti-affinity: no two instances of the group on one host of the datacenter. A create that
     * cannot be honoured fails with the scheduler's reasons. Absent: false.
     */
    spread_hosts: z.boolean().optional(),
  })
  .openapi("ManagerInstanceSpec");
export type ManagerInstanceSpec = z.infer<typeof ManagerInstanceSpecSchema>;

export const ManagerInstanceMetadataSchema = z
  .strictObject({ metadata: MetadataValuesSchema })
  .openapi("ManagerInstanceMetadata");
export type ManagerInstanceMetadata = z.infer<typeof ManagerInstanceMetadataSchema>;

/** States a manager reports: the driver's, plus the image pull that precedes a start. */
export const REPORTED_INSTANCE_STATES = [
  "transferring-image",
  "starting",
  "running",
  "ready",
  "stopped",
  "failed",
] as const;
export const ReportedInstanceStateSchema = z.enum(REPORTED_INSTANCE_STATES);
export type ReportedInstanceState = z.infer<typeof ReportedInstanceStateSchema>;

/** What a manager's instance API answers about one instance. */
export const ManagerInstanceStatusSchema = z
  .object({
    instance_id: idSchema("instance"),
    state: ReportedInstanceStateSchema,
    reason: z.string().nullable(),
    guest_attributes: z.record(z.string(), z.string()),
    vcpus: z.number().int(),
    memory_mb: z.number().int(),
    image_id: z.string(),
    image_version: z.number().int().nullable(),
    pid: z.number().int().nullable(),
  })
  .openapi("ManagerInstanceStatus");
export type ManagerInstanceStatus = z.infer<typeof ManagerInstanceStatusSchema>;

/** A manager reports an instance's state to the control plane (PUT /v1/datacenters/{dc}/instances/{id}). */
export const InstanceReportSchema = z
  .strictObject({
    state: ReportedInstanceStateSchema,
    state_reason: z.string().max(2000).nullable().optional(),
    address: z.string().max(255).nullable().optional(),
    local_id: z.string().max(128).optional(),
    image_version: z.number().int().min(1).optional(),
    guest_attributes: z.record(z.string().max(256), z.string().max(65536)).optional(),
    boot_log_tail: z.string().max(16384).nullable().optional(),
    /** The endpoints of the instance's group on this manager's host, once it has given them. */
    endpoints: z.array(ReportedEndpointSchema).max(16).optional(),
    /** The datacenter host running the guest (null: the manager runs it itself, with no host agents). */
    host: NameSchema.nullable().optional(),
    /**
     * Set once, on the report of the change, when the manager recreated the instance by itself
     * (autohealing): why, and when. The control plane records it in the group's operations.
     */
    repair: z
      .strictObject({ reason: z.string().min(1).max(2000), at: z.string().datetime({ offset: true }) })
      .optional(),
  })
  .openapi("InstanceReport");
export type InstanceReport = z.infer<typeof InstanceReportSchema>;
