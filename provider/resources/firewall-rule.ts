// globalvm_firewall_rule: one ingress rule of a network. Everything but its network and name
// changes in place; the change reaches running guests without restarting them.

import { expectData, type FieldPath, type FirewallRule } from "../../client/api.ts";
import { parseCidr } from "../../schemas/ipv4.ts";
import { DEFAULT_FIREWALL_PRIORITY, parsePortRange } from "../../schemas/plain.ts";
import {
  type CallContext,
  CtyNumber,
  DiagnosticError,
  defineResource,
  type ObjectValue,
  requiresReplace,
  useStateForUnknown,
} from "../index.ts";
import type { GlobalvmProviderData } from "../provider-data.ts";
import { numberOf } from "./values.ts";

const ACTIONS = ["allow", "deny"];
const PROTOCOLS = ["tcp", "udp", "icmp", "all"];

function ruleState(rule: FirewallRule): ObjectValue {
  return {
    id: `${rule.network_id}/${rule.id}`,
    rule_id: rule.id,
    network: rule.network_id,
    name: rule.name,
    description: rule.description,
    priority: new CtyNumber(rule.priority),
    action: rule.action,
    protocol: rule.protocol,
    ports: [...rule.ports],
    source_cidr: rule.source.cidr ?? null,
    source_vm_group: rule.source.vm_group ?? null,
  };
}

/** `net_…/fwr_…`: the rule's network and its own ID, what `terraform import` takes. */
function parseId(id: string): { network: string; rule: string } {
  const match = /^(net_[0-9a-z]{26})\/(fwr_[0-9a-z]{26})$/.exec(id);
  if (!match) {
    throw new DiagnosticError("Invalid firewall rule ID", {
      detail: `Import a firewall rule as NETWORK_ID/RULE_ID (e.g. net_…/fwr_…), not ${JSON.stringify(id)}.`,
    });
  }
  return { network: match[1] as string, rule: match[2] as string };
}

function bodyOf(plan: ObjectValue) {
  return {
    description: typeof plan.description === "string" ? plan.description : "",
    priority: numberOf(plan.priority) ?? DEFAULT_FIREWALL_PRIORITY,
    action: String(plan.action) as FirewallRule["action"],
    protocol: String(plan.protocol) as FirewallRule["protocol"],
    ports: Array.isArray(plan.ports) ? plan.ports.filter((p): p is string => typeof p === "string") : [],
    source:
      typeof plan.source_cidr === "string"
        ? { cidr: plan.source_cidr }
        : { vm_group: String(plan.source_vm_group) },
  };
}

async function getRule(context: CallContext<GlobalvmProviderData>, id: string): Promise<FirewallRule | null> {
  const { network, rule } = parseId(id);
  const result = await context.providerData.api.GET("/v1/networks/{id}/firewall-rules/{rule_id}", {
    params: { path: { id: network, rule_id: rule } },
    signal: context.signal,
  });
  if (result.response.status === 404) return null;
  return expectData("Reading the firewall rule", result);
}

/** API field paths are the HCL attributes, `source.cidr` being `source_cidr`. */
const attributePath = (path: FieldPath): FieldPath =>
  path[0] === "source" && typeof path[1] === "string" ? [`source_${path[1]}`] : path.slice(0, 1);

export const firewallRuleResource = defineResource<GlobalvmProviderData>({
  typeName: "globalvm_firewall_rule",
  schema: {
    description:
      "An ingress rule of a network: rules are evaluated by priority, lowest first, and the first that matches decides; traffic no rule matches follows the network's default (the `default` network lets its own instances talk, any other network denies).",
    attributes: {
      id: { type: "string", computed: true, planModifiers: [useStateForUnknown()] },
      rule_id: { type: "string", computed: true, planModifiers: [useStateForUnknown()] },
      network: {
        type: "string",
        required: true,
        description: "The network's ID. Another network replaces the rule.",
        planModifiers: [requiresReplace()],
      },
      name: {
        type: "string",
        required: true,
        description: "Unique in the network. Another name replaces the rule.",
        planModifiers: [requiresReplace()],
      },
      description: { type: "string", default: "" },
      priority: {
        type: "number",
        default: new CtyNumber(DEFAULT_FIREWALL_PRIORITY),
        description: "0 to 65535, lower first.",
      },
      action: { type: "string", required: true, description: "allow or deny." },
      protocol: { type: "string", required: true, description: "tcp, udp, icmp or all." },
      ports: {
        type: ["list", "string"],
        default: [],
        description: 'Destination ports or ranges ("80", "8000-8080"), tcp and udp only; empty: every port.',
      },
      source_cidr: { type: "string", optional: true, description: "Traffic from this IPv4 block." },
      source_vm_group: {
        type: "string",
        optional: true,
        description: "Traffic from the instances of this VM group of the project, wherever they run.",
      },
    },
  },
  validateConfig(config, diagnostics) {
    if (typeof config.action === "string" && !ACTIONS.includes(config.action)) {
      diagnostics.error("Invalid action", `action is allow or deny, not ${config.action}.`, ["action"]);
    }
    if (typeof config.protocol === "string" && !PROTOCOLS.includes(config.protocol)) {
      diagnostics.error(
        "Invalid protocol",
        `protocol is one of ${PROTOCOLS.join(", ")}, not ${config.protocol}.`,
        ["protocol"],
      );
    }
    const priority = numberOf(config.priority);
    if (priority !== undefined && !(Number.isInteger(priority) && priority >= 0 && priority <= 65_535)) {
      diagnostics.error("Invalid priority", `priority is an integer from 0 to 65535, not ${priority}.`, [
        "priority",
      ]);
    }
    if (Array.isArray(config.ports)) {
      config.ports.forEach((port, index) => {
        if (typeof port !== "string") return;
        const range = parsePortRange(port);
        if ("error" in range) diagnostics.error("Invalid port", `${port} ${range.error}.`, ["ports", index]);
      });
      if (
        config.ports.length > 0 &&
        typeof config.protocol === "string" &&
        ["icmp", "all"].includes(config.protocol)
      ) {
        diagnostics.error(
          "Ports without a port protocol",
          `ports apply to tcp and udp, not ${config.protocol}.`,
          ["ports"],
        );
      }
    }
    if (typeof config.source_cidr === "string") {
      const cidr = parseCidr(config.source_cidr);
      if ("error" in cidr)
        diagnostics.error("Invalid source_cidr", `${config.source_cidr} ${cidr.error}.`, ["source_cidr"]);
    }
    // Unknown values (another resource's, at plan time) are neither string nor null here.
    if (config.source_cidr === null && config.source_vm_group === null) {
      diagnostics.error("Missing source", "Give one of source_cidr and source_vm_group.", ["source_cidr"]);
    } else if (typeof config.source_cidr === "string" && typeof config.source_vm_group === "string") {
      diagnostics.error("Two sources", "Give one of source_cidr and source_vm_group, not both.", [
        "source_vm_group",
      ]);
    }
  },
  async create({ plan }, context) {
    const created = expectData(
      "Creating the firewall rule",
      await context.providerData.api.POST("/v1/networks/{id}/firewall-rules", {
        params: { path: { id: String(plan.network) } },
        body: { name: String(plan.name), direction: "ingress", ...bodyOf(plan) },
        signal: context.signal,
      }),
      attributePath,
    );
    return ruleState(created);
  },
  async read({ state }, context) {
    const rule = await getRule(context, String(state.id));
    return rule ? ruleState(rule) : null;
  },
  async update({ plan, prior }, context) {
    const { network, rule } = parseId(String(prior.id));
    const updated = expectData(
      "Updating the firewall rule",
      await context.providerData.api.PATCH("/v1/networks/{id}/firewall-rules/{rule_id}", {
        params: { path: { id: network, rule_id: rule } },
        body: bodyOf(plan),
        signal: context.signal,
      }),
      attributePath,
    );
    return ruleState(updated);
  },
  async delete({ prior }, context) {
    const { network, rule } = parseId(String(prior.id));
    const result = await context.providerData.api.DELETE("/v1/networks/{id}/firewall-rules/{rule_id}", {
      params: { path: { id: network, rule_id: rule } },
      signal: context.signal,
    });
    if (result.response.ok || result.response.status === 404) return;
    expectData("Deleting the firewall rule", result);
  },
  importState: ({ id }) => {
    parseId(id);
    return { id };
  },
});
