// The host's nftables rules for guest networks, from its HostNetworkSpec: a plain function that
// writes one `nft -f` script, applied by the executor (linux.ts) as one transaction.
import { parsePortRange } from "../../schemas/firewall-rules.ts";
import { cidrContains, formatCidr, parseCidr } from "../../schemas/ipv4.ts";
import { conntrackZone, endpointMark, routedNetworks } from "./routing.ts";
import {
  deviceName,
  type EndpointSpec,
  type FirewallRuleSpec,
  type HostNetworkSpec,
  type NetworkSpec,
  type PortSpec,
} from "./spec.ts";

export const NFT_TABLE = "globalvm";

/**
 * The host's nftables rules for guest networks, as one `nft -f` script that replaces globalvm's
 * tables atomically (declare, delete, define: the kernel applies the file as one transaction).
 * - bridge family, forward: a port sends only from its own MAC and IPv4 address (ARP included),
 *   and only IPv4 and ARP, so a guest cannot pose as another or reach anything by spoofing;
 * - bridge family, input: no frame from a guest port or a tunnel is delivered to the host, so a
 *   guest can neither reach a host address nor use the host as a router to another network —
 *   except, from a guest port, IPv4 and ARP addressed to the network's gateway, and replies of
 *   endpoint connections (marked, see below);
 * - inet family, input: the same at the IP layer; from a bridge only replies to connections the
 *   host started (endpoints, and its probes of whether a guest serves) get through;
 * - inet family, firewall: bridged IPv4 passes the inet hooks (br_netfilter, on by default in
 *   every namespace), with the bridge as both interfaces. Each network gets its own conntrack
 *   zone, so equal addresses in two projects' networks never share a connection; a packet
 *   leaving a network's bridge toward one of this host's guests of that network goes through
 *   the network's rules (established flows first, then the rules in order, then the default,
 *   then drop). Traffic toward another host's guest is judged there, by its destination host.
 * - endpoints (endpointLines): a connection to the host's underlay address on an endpoint's port
 *   is marked with its network's mark and zone, destination-NATed to one of the group's ready
 *   guests (numgen: round robin), source-NATed to the gateway so the guest answers on-link, and
 *   judged by the network's firewall with the client as the source (the outside);
 * - a datacenter's gateway (a manager of host agents) carries endpoints whose guests are on the
 *   agents' hosts (`remoteGuests`): they are judged here as local guests are, and ARP and replies
 *   for the gateway come in through the network's tunnel as a local guest's come through its tap;
 *   an agent accepts what the gateway sends its guests (`endpointGateway`), judged already.
 * The metadata service is reached through QEMU, not the bridge.
 * With no networks, the tables are removed.
 */
export function renderNftRules(spec: HostNetworkSpec): string {
  const reset = [`table bridge ${NFT_TABLE}`, `delete table bridge ${NFT_TABLE}`];
  const resetInet = [`table inet ${NFT_TABLE}`, `delete table inet ${NFT_TABLE}`];
  const ports: Array<{ tap: string; port: PortSpec }> = spec.networks.flatMap((network: NetworkSpec) =>
    network.ports.map((port) => ({ tap: deviceName("tap", port.instanceId), port })),
  );
  if (spec.networks.length === 0) return `${[...reset, ...resetInet].join("\n")}\n`;
  const elements = ports.map(({ tap, port }) => `"${tap}" . ${port.mac} . ${port.address}`);
  const tapGlob = `"${deviceName("tap", "x").slice(0, 3)}*"`;
  const bridgeGlob = `"${deviceName("bridge", "x").slice(0, 3)}*"`;
  const vxlanGlob = `"${deviceName("vxlan", "x").slice(0, 3)}*"`;
  const guarded = spec.networks.filter((network) => network.firewall && guestAddresses(network).length > 0);
  const routed = routedNetworks(spec);
  const gateways = [...new Set(routed.map((network) => gatewayOf(network)))];
  // On a datacenter's gateway, what its endpoints' remote guests send it (ARP for the gateway,
  // replies) arrives through the network's tunnel, as a local guest's does through its tap.
  const gatewayTunnels = routed
    .filter((network) => (network.remoteGuests ?? []).length > 0)
    .map((network) => `"${deviceName("vxlan", network.id)}"`);
  const toGateway = gatewayTunnels.length === 0 ? tapGlob : `{ ${[tapGlob, ...gatewayTunnels].join(", ")} }`;
  const endpoints = endpointLines(spec, routed);
  const lines = [
    ...reset,
    `table bridge ${NFT_TABLE} {`,
    "  set port_sources {",
    "    type ifname . ether_addr . ipv4_addr",
    ...(elements.length > 0 ? [`    elements = { ${elements.join(", ")} }`] : []),
    "  }",
    "  chain forward {",
    "    type filter hook forward priority 0; policy accept;",
    `    iifname ${tapGlob} ether type != { ip, arp } drop`,
    `    iifname ${tapGlob} ether type ip iifname . ether saddr . ip saddr != @port_sources drop`,
    `    iifname ${tapGlob} ether type arp iifname . ether saddr . arp saddr ip != @port_sources drop`,
    "  }",
    "  chain input {",
    "    type filter hook input priority 0; policy accept;",
    ...(gateways.length > 0
      ? [
          `    iifname ${toGateway} ether type arp arp daddr ip { ${gateways.join(", ")} } accept`,
          `    iifname ${toGateway} ether type ip ip daddr { ${gateways.join(", ")} } accept`,
          // A reply of an endpoint connection arrives here with its NAT already undone (the
          // inet prerouting hooks run first, br_netfilter): its network's mark says what it is.
          `    iifname ${toGateway} ether type ip meta mark { ${routed.map(markText).join(", ")} } accept`,
        ]
      : []),
    `    iifname { ${tapGlob}, ${vxlanGlob} } drop`,
    "  }",
    "}",
    ...resetInet,
    `table inet ${NFT_TABLE} {`,
    "  chain input {",
    "    type filter hook input priority 0; policy accept;",
    // Replies to what the host started (endpoint connections, its probes of guests): a guest's
    // own first packet is never accepted, so no connection a guest starts is ever established.
    ...(routed.length > 0 ? [`    iifname ${bridgeGlob} ct state established,related accept`] : []),
    `    iifname ${bridgeGlob} drop`,
    "  }",
    "  chain prerouting {",
    "    type filter hook prerouting priority raw; policy accept;",
    ...spec.networks.map(
      (network) =>
        `    iifname "${deviceName("bridge", network.id)}" ct zone set ${conntrackZone(network.vni)}`,
    ),
    ...endpoints.classify,
    "  }",
    "  chain forward {",
    "    type filter hook forward priority 0; policy accept;",
    ...guarded.map((network) => `    ${toLocalGuests(network)} jump ${firewallChain(network.id)}`),
    "  }",
    ...endpoints.chains,
    ...guarded.flatMap((network) => firewallChainLines(network)),
    "}",
  ];
  return `${lines.join("\n")}\n`;
}

function gatewayOf(network: NetworkSpec): string {
  return (network.gateway as NonNullable<NetworkSpec["gateway"]>).address;
}

/**
 * Matches a packet leaving the network's bridge toward one of the guests this host judges: its
 * own, and on a gateway the remote guests its endpoints lead to.
 */
function toLocalGuests(network: NetworkSpec): string {
  return `oifname "${deviceName("bridge", network.id)}" ip daddr { ${guestAddresses(network).join(", ")} }`;
}

function guestAddresses(network: NetworkSpec): string[] {
  return [...network.ports.map((port) => port.address), ...(network.remoteGuests ?? [])];
}

/**
 * The endpoints' rules: `classify` lines for the prerouting raw chain (connections arriving from
 * elsewhere), and the chains of their own. Zone and mark are set before conntrack sees the
 * first packet, on every packet (the mark chooses the network's routing table: routing.ts); a
 * reply from a guest gets the mark back, so reverse-path checks find the route it came by. The
 * input hook has a NAT chain, empty, because the kernel undoes a NAT only at hooks that have one.
 */
function endpointLines(
  spec: HostNetworkSpec,
  routed: readonly NetworkSpec[],
): { classify: string[]; chains: string[] } {
  if (routed.length === 0) return { classify: [], chains: [] };
  const classify: string[] = [];
  const dnat: string[] = [];
  for (const network of routed) {
    const set = `ct zone set ${conntrackZone(network.vni)} meta mark set ${markText(network)}`;
    for (const endpoint of network.endpoints ?? []) {
      const match = `ip daddr ${spec.underlayAddress} ${endpoint.protocol} dport ${endpoint.hostPort}`;
      classify.push(`    ${match} ${set}`);
      // No ready guest: no NAT, and the host itself refuses (nothing listens on the port).
      if (endpoint.backends.length > 0) dnat.push(`    ${match} ${dnatTo(endpoint)}`);
    }
  }
  const guarded = routed.filter((network) => network.firewall && guestAddresses(network).length > 0);
  const chains = [
    "  chain endpoint_output {",
    "    type filter hook output priority raw; policy accept;",
    ...classify,
    // The host's probes of its guests (bound to the bridge) are in the network's zone too.
    ...routed.map(
      (network) =>
        `    oifname "${deviceName("bridge", network.id)}" ct zone set ${conntrackZone(network.vni)}`,
    ),
    "  }",
    "  chain endpoint_replies {",
    "    type filter hook prerouting priority mangle; policy accept;",
    ...routed.map(
      (network) =>
        `    iifname "${deviceName("bridge", network.id)}" ct status dnat meta mark set ${markText(network)}`,
    ),
    "  }",
    "  chain endpoint_prerouting {",
    "    type nat hook prerouting priority dstnat; policy accept;",
    ...dnat,
    "  }",
    "  chain endpoint_local {",
    "    type nat hook output priority -100; policy accept;",
    ...dnat,
    "  }",
    "  chain endpoint_input {",
    "    type nat hook input priority 100; policy accept;",
    "  }",
    "  chain endpoint_postrouting {",
    "    type nat hook postrouting priority srcnat; policy accept;",
    ...routed.map(
      (network) =>
        `    oifname "${deviceName("bridge", network.id)}" ct status dnat snat ip to ${gatewayOf(network)}`,
    ),
    "  }",
    // A connection made on this host (the loopback relay of a namespace host) never passes the
    // forward hook: its firewall check is here. The output hooks all see it before it is routed
    // anew (its interface is still the loopback): the mark says which network it is going to.
    "  chain endpoint_firewall {",
    "    type filter hook output priority 0; policy accept;",
    ...guarded.map(
      (network) =>
        `    meta mark ${markText(network)} ip daddr { ${guestAddresses(network).join(", ")} } ct status dnat jump ${firewallChain(network.id)}`,
    ),
    "  }",
  ];
  return { classify, chains };
}

function markText(network: NetworkSpec): string {
  return `0x${endpointMark(network.vni).toString(16)}`;
}

function dnatTo(endpoint: EndpointSpec): string {
  if (endpoint.backends.length === 1) return `dnat ip to ${endpoint.backends[0]}:${endpoint.guestPort}`;
  const entries = endpoint.backends.map((address, index) => `${index} : ${address}`).join(", ");
  return `dnat ip to numgen inc mod ${endpoint.backends.length} map { ${entries} } : ${endpoint.guestPort}`;
}

function firewallChain(networkId: string): string {
  return `fw_${deviceName("bridge", networkId)}`;
}

function firewallChainLines(network: NetworkSpec): string[] {
  const firewall = network.firewall as NonNullable<NetworkSpec["firewall"]>;
  const rules = firewall.rules.flatMap((rule) => {
    const match = ruleMatch(rule.sources, rule.protocol, rule.ports);
    return match === undefined ? [] : [`    ${match}${rule.action === "allow" ? "accept" : "drop"}`];
  });
  const otherwise = ruleMatch(firewall.otherwiseAllow, "all", []);
  return [
    `  chain ${firewallChain(network.id)} {`,
    "    ct state established,related accept",
    "    ct state invalid drop",
    // Endpoint connections from the datacenter's gateway on another host were judged there, with
    // the client as the source; no guest can send from that address (the bridge rules above).
    ...(network.endpointGateway ? [`    ip saddr ${network.endpointGateway} accept`] : []),
    ...rules,
    ...(otherwise !== undefined ? [`    ${otherwise}accept`] : []),
    "    drop",
    "  }",
  ];
}

/** The match of a rule, ending in a space; undefined when it can match nothing (no source). */
function ruleMatch(
  sources: readonly string[],
  protocol: FirewallRuleSpec["protocol"],
  ports: readonly string[],
): string | undefined {
  const blocks = outermostBlocks(sources);
  if (blocks.length === 0) return undefined;
  const from = blocks.includes("0.0.0.0/0") ? "" : `ip saddr { ${blocks.join(", ")} } `;
  if (protocol === "all") return from;
  if (protocol === "icmp") return `${from}ip protocol icmp `;
  if (ports.length === 0) return `${from}ip protocol ${protocol} `;
  return `${from}${protocol} dport { ${mergedPortRanges(ports).join(", ")} } `;
}

/*
 * nft refuses a set whose elements overlap ("conflicting intervals"), and users' rules may well
 * overlap (80 and 80-90; a /16 and a group's /32 inside it): each set is written as the
 * union, the same packets matched.
 */

/** The blocks not inside another of them (two IPv4 blocks overlap only when one holds the other). */
export function outermostBlocks(sources: readonly string[]): string[] {
  const blocks = [...new Set(sources)].flatMap((text) => {
    const cidr = parseCidr(text.includes("/") ? text : `${text}/32`);
    return "error" in cidr ? [] : [cidr];
  });
  return blocks
    .filter(
      (block, i) =>
        !blocks.some(
          (other, j) =>
            j !== i && cidrContains(other, block) && (other.prefixLength < block.prefixLength || j < i),
        ),
    )
    .sort((a, b) => a.base - b.base)
    .map(formatCidr);
}

/** `80`, `80-90`, `85`, `91-95` → `80-95`. */
export function mergedPortRanges(ports: readonly string[]): string[] {
  const ranges = ports
    .map((text) => parsePortRange(text))
    .flatMap((range) => ("error" in range ? [] : [range]))
    .sort((a, b) => a.from - b.from);
  const merged: Array<{ from: number; to: number }> = [];
  for (const range of ranges) {
    const last = merged.at(-1);
    if (last && range.from <= last.to + 1) last.to = Math.max(last.to, range.to);
    else merged.push({ ...range });
  }
  return merged.map(({ from, to }) => (from === to ? String(from) : `${from}-${to}`));
}
