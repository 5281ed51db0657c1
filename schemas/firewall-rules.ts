// Firewall rules of a network: which traffic may reach its instances (ingress only, as a
// security group's inbound rules or a GCE ingress firewall rule). Rules are ordered by
// priority, lowest first; the first rule matching a packet decides; a packet no rule matches
// follows the network's default (networks.ts: `default` allows traffic between its own
// instances; every other network denies ingress until a rule allows it).
import { z } from "@hono/zod-openapi";
import { idSchema, NameSchema, TimestampSchema } from "./common.ts";
import { parseCidr } from "./ipv4.ts";
import { DEFAULT_FIREWALL_PRIORITY, parsePortRange } from "./plain.ts";

export { DEFAULT_FIREWALL_PRIORITY, parsePortRange };

export const FIREWALL_ACTIONS = ["allow", "deny"] as const;
export const FIREWALL_PROTOCOLS = ["tcp", "udp", "icmp", "all"] as const;
export type FirewallProtocol = (typeof FIREWALL_PROTOCOLS)[number];
/** Every rule is a line of nftables on every host with the network's guests: keep them few. */
export const MAX_RULES_PER_NETWORK = 1000;

/** `80` or `8000-8080`: what a rule's `ports` list holds. */
export const PortRangeSchema = z
  .string()
  .superRefine((text, ctx) => {
    const range = parsePortRange(text);
    if ("error" in range) ctx.addIssue({ code: "custom", message: range.error });
  })
  .openapi({ example: "8000-8080" });

const SourceCidrSchema = z
  .string()
  .superRefine((text, ctx) => {
    const cidr = parseCidr(text);
    if ("error" in cidr) ctx.addIssue({ code: "custom", message: cidr.error });
  })
  .openapi({ example: "0.0.0.0/0", description: "Packets from addresses in this IPv4 block." });

export const FirewallSourceSchema = z
  .strictObject({
    cidr: SourceCidrSchema.optional(),
    vm_group: NameSchema.optional().openapi({
      description: "Packets from the instances of this VM group of the project, wherever they run.",
    }),
  })
  .superRefine((source, ctx) => {
    if ((source.cidr === undefined) === (source.vm_group === undefined)) {
      ctx.addIssue({ code: "custom", message: "name exactly one of cidr and vm_group" });
    }
  })
  .openapi("FirewallSource", { description: "Where the traffic comes from: an IPv4 block or a VM group." });
export type FirewallSource = z.infer<typeof FirewallSourceSchema>;

const PrioritySchema = z.number().int().min(0).max(65_535).openapi({
  description: "Lower is evaluated first (0 to 65535); the first matching rule decides.",
  example: DEFAULT_FIREWALL_PRIORITY,
});
const PortsSchema = z
  .array(PortRangeSchema)
  .max(64)
  .openapi({
    description: "Destination ports or ranges, for tcp and udp only; empty or absent: every port.",
    example: ["80", "8000-8080"],
  });
const DescriptionSchema = z.string().max(256);

export const FirewallRuleSchema = z
  .object({
    id: idSchema("firewallRule"),
    network_id: idSchema("network"),
    name: NameSchema,
    description: z.string(),
    direction: z.literal("ingress"),
    priority: z.number().int(),
    action: z.enum(FIREWALL_ACTIONS),
    protocol: z.enum(FIREWALL_PROTOCOLS),
    ports: z.array(z.string()),
    source: FirewallSourceSchema,
    created_at: TimestampSchema,
    updated_at: TimestampSchema,
  })
  .openapi("FirewallRule");
export type FirewallRule = z.infer<typeof FirewallRuleSchema>;

/** Ports only mean something for tcp and udp. */
function checkPorts(rule: { protocol?: FirewallProtocol; ports?: string[] }, ctx: z.RefinementCtx) {
  if (
    rule.ports &&
    rule.ports.length > 0 &&
    rule.protocol !== undefined &&
    !["tcp", "udp"].includes(rule.protocol)
  ) {
    ctx.addIssue({
      code: "custom",
      path: ["ports"],
      message: `ports apply to tcp and udp, not ${rule.protocol}`,
    });
  }
}

export const CreateFirewallRuleSchema = z
  .strictObject({
    name: NameSchema,
    description: DescriptionSchema.default(""),
    direction: z.literal("ingress").default("ingress").openapi({ description: "Only ingress rules exist." }),
    priority: PrioritySchema.default(DEFAULT_FIREWALL_PRIORITY),
    action: z.enum(FIREWALL_ACTIONS),
    protocol: z.enum(FIREWALL_PROTOCOLS),
    ports: PortsSchema.default([]),
    source: FirewallSourceSchema,
  })
  .superRefine(checkPorts)
  .openapi("CreateFirewallRule");

export const UpdateFirewallRuleSchema = z
  .strictObject({
    description: DescriptionSchema.optional(),
    priority: PrioritySchema.optional(),
    action: z.enum(FIREWALL_ACTIONS).optional(),
    protocol: z.enum(FIREWALL_PROTOCOLS).optional(),
    ports: PortsSchema.optional(),
    source: FirewallSourceSchema.optional(),
  })
  .openapi("UpdateFirewallRule", {
    description: "Every field but the name may change in place; the change reaches running guests at once.",
  });
