// A network's firewall as the managers enforce it: the catalog's rules in evaluation order, a
// VM group source resolved to the addresses of the group's instances on the network, and the
// network's default. Sent with every instance's spec, and pushed on its own to each datacenter
// with the network's guests whenever the rules or a source group's instances change.
import { and, asc, eq, inArray, isNotNull } from "drizzle-orm";
import type { ManagerNetworkFirewall } from "../../schemas/manager-instances.ts";
import { DEFAULT_NETWORK } from "../../schemas/networks.ts";
import { datacenterStatus } from "../catalog/datacenter-status.ts";
import { datacenters, firewallRules, instances, networks, vmGroups } from "../catalog/schema.ts";
import type { Services } from "../env.ts";
import { ManagerCallError, requestManager } from "./manager-client.ts";

type RuleRow = typeof firewallRules.$inferSelect;

/**
 * The firewall of a network from its rules (sorted as they are evaluated) and the addresses of
 * the source groups' instances. The `default` network lets its own instances talk, as GCE's
 * default-allow-internal rule does; any other network denies what no rule allows.
 */
export function compileFirewall(input: {
  network: { name: string; cidr: string };
  rules: readonly RuleRow[];
  groupAddresses: ReadonlyMap<string, readonly string[]>;
  revision: number;
}): ManagerNetworkFirewall {
  return {
    revision: input.revision,
    rules: input.rules.map((rule) => ({
      action: rule.action as "allow" | "deny",
      protocol: rule.protocol as "tcp" | "udp" | "icmp" | "all",
      ports: rule.ports,
      sources:
        rule.sourceCidr !== null
          ? [rule.sourceCidr]
          : (input.groupAddresses.get(rule.sourceVmGroup ?? "") ?? []).map((address) => `${address}/32`),
    })),
    otherwise_allow: input.network.name === DEFAULT_NETWORK.name ? [input.network.cidr] : [],
  };
}

/** The network's firewall as of now (its revision: now in milliseconds); undefined for a network that is gone. */
export async function firewallOfNetwork(
  services: Services,
  networkId: string,
): Promise<ManagerNetworkFirewall | undefined> {
  const { db } = services;
  const [network] = await db
    .select({ name: networks.name, cidr: networks.cidr, projectId: networks.projectId })
    .from(networks)
    .where(eq(networks.id, networkId));
  if (!network) return undefined;
  const rules = await db
    .select()
    .from(firewallRules)
    .where(eq(firewallRules.networkId, networkId))
    .orderBy(asc(firewallRules.priority), asc(firewallRules.name));
  const groupNames = [...new Set(rules.flatMap((r) => (r.sourceVmGroup !== null ? [r.sourceVmGroup] : [])))];
  const groupAddresses = new Map<string, string[]>();
  if (groupNames.length > 0) {
    // A group's instances on this network: a group on another network cannot reach it anyway.
    const members = await db
      .select({ group: vmGroups.name, address: instances.networkIp })
      .from(instances)
      .innerJoin(vmGroups, eq(vmGroups.id, instances.vmGroupId))
      .where(
        and(
          eq(vmGroups.projectId, network.projectId),
          inArray(vmGroups.name, groupNames),
          eq(instances.networkId, networkId),
          isNotNull(instances.networkIp),
        ),
      );
    for (const { group, address } of members) {
      if (address) groupAddresses.set(group, [...(groupAddresses.get(group) ?? []), address]);
    }
  }
  return compileFirewall({ network, rules, groupAddresses, revision: services.now().getTime() });
}

/** Sends the network's firewall to every datacenter that runs one of its instances and is up. */
export async function pushFirewall(services: Services, networkId: string): Promise<void> {
  const firewall = await firewallOfNetwork(services, networkId);
  if (!firewall) return;
  const places = await services.db
    .selectDistinct({
      name: datacenters.name,
      managerUrl: datacenters.managerUrl,
      heartbeat: datacenters.lastHeartbeatAt,
    })
    .from(instances)
    .innerJoin(datacenters, eq(datacenters.name, instances.datacenter))
    .where(eq(instances.networkId, networkId));
  const failures: string[] = [];
  await Promise.all(
    places.map(async (place) => {
      // A datacenter that is down gets the rules with its next instance, or the next push.
      if (!place.managerUrl || datacenterStatus(place.heartbeat, services.now()) === "down") return;
      try {
        await requestManager({
          managerUrl: place.managerUrl,
          token: await services.networkTokens.sign({ networkId, datacenter: place.name }),
          method: "PUT",
          path: `/v1/networks/${networkId}/firewall`,
          body: firewall,
          timeoutMs: 5000,
          describe: `manager of ${place.name}: PUT firewall of ${networkId}`,
        });
      } catch (error) {
        // A manager that attaches no guests to networks has nothing to enforce.
        if (error instanceof ManagerCallError && error.code === "no_guest_network") return;
        failures.push(String(error));
      }
    }),
  );
  if (failures.length > 0) throw new Error(failures.join("; "));
}

/**
 * What `Services.firewallChanged` does where the orchestrator runs: pushes in the background,
 * one push at a time per network (a later one computes from the later catalog), never failing
 * the caller.
 */
export function firewallPusher(services: Services, log: (line: string) => void) {
  const queues = new Map<string, Promise<void>>();
  return (networkId: string): Promise<void> => {
    const next = (queues.get(networkId) ?? Promise.resolve())
      .then(() => pushFirewall(services, networkId))
      .catch((error: unknown) => log(`[WARN] firewall of ${networkId} not sent everywhere: ${error}`))
      .finally(() => {
        if (queues.get(networkId) === next) queues.delete(networkId);
      });
    queues.set(networkId, next);
    return Promise.resolve();
  };
}

/** Whether a rule of the group's network names the group as its source. */
export async function isFirewallSource(
  services: Services,
  group: { name: string; networkId: string },
): Promise<boolean> {
  const rows = await services.db
    .select({ id: firewallRules.id })
    .from(firewallRules)
    .where(and(eq(firewallRules.networkId, group.networkId), eq(firewallRules.sourceVmGroup, group.name)))
    .limit(1);
  return rows.length > 0;
}
