// From what a host has (its devices and tunnel peers, as `ip -j -d link` and `bridge -j fdb`
// report them) and what it should have (a HostNetworkSpec), the commands that make it so. Plain
// functions: the executor (linux.ts) observes and runs, this decides. Applying the plan twice does
// nothing the second time, and a restarted manager adopts what it finds under its own names.

import { parsePortRange } from "../../schemas/firewall-rules.ts";
import { cidrContains, formatCidr, parseCidr } from "../../schemas/ipv4.ts";
import {
  type DeviceKind,
  deviceName,
  type FirewallRuleSpec,
  type HostNetworkSpec,
  type NetworkSpec,
  ownedKind,
  type PortSpec,
  VXLAN_PORT,
} from "./spec.ts";

/** One device as the kernel reports it, reduced to what the plan compares. */
export interface ObservedDevice {
  name: string;
  /** The globalvm kind its name says, or undefined for a device globalvm does not own. */
  owned: DeviceKind | undefined;
  /** `bridge`, `vxlan`, `tun`, `veth`, … (from `linkinfo.info_kind`). */
  linkKind: string | undefined;
  up: boolean;
  mtu: number;
  master: string | undefined;
  vxlan?: { vni: number; local: string | undefined; port: number; learning: boolean };
  /** A tap's owner, as ip prints it (a user name, or a uid). */
  tapUser?: string;
}

export interface ObservedHost {
  devices: ReadonlyMap<string, ObservedDevice>;
  /** Per owned VXLAN device: the underlay addresses its all-zeros FDB entries replicate to. */
  floodPeers: ReadonlyMap<string, ReadonlySet<string>>;
}

export interface Step {
  /** argv of `ip` or `bridge`, without the program. */
  program: "ip" | "bridge";
  args: string[];
}

const FLOOD_MAC = "00:00:00:00:00:00";

interface IpLinkJson {
  ifname: string;
  flags?: string[];
  mtu?: number;
  master?: string;
  linkinfo?: {
    info_kind?: string;
    info_data?: { id?: number; local?: string; port?: number; learning?: boolean; user?: string | number };
  };
}

interface FdbJson {
  mac?: string;
  ifname?: string;
  dev?: string;
  dst?: string;
}

/** Parses `ip -j -d link show` and `bridge -j fdb show` output. */
export function observeHost(linksJson: string, fdbJson: string): ObservedHost {
  const devices = new Map<string, ObservedDevice>();
  for (const link of JSON.parse(linksJson) as IpLinkJson[]) {
    const kind = link.linkinfo?.info_kind;
    const data = link.linkinfo?.info_data;
    const device: ObservedDevice = {
      name: link.ifname,
      owned: ownedKind(link.ifname),
      linkKind: kind,
      up: (link.flags ?? []).includes("UP"),
      mtu: link.mtu ?? 0,
      master: link.master,
    };
    if (kind === "vxlan" && data) {
      device.vxlan = {
        vni: data.id ?? 0,
        local: data.local,
        port: data.port ?? 0,
        learning: data.learning ?? true,
      };
    }
    if (kind === "tun" && data?.user !== undefined) device.tapUser = String(data.user);
    devices.set(link.ifname, device);
  }
  const floodPeers = new Map<string, Set<string>>();
  for (const entry of JSON.parse(fdbJson) as FdbJson[]) {
    const dev = entry.ifname ?? entry.dev;
    if (!dev || entry.mac !== FLOOD_MAC || !entry.dst || devices.get(dev)?.owned !== "vxlan") continue;
    const peers = floodPeers.get(dev) ?? new Set<string>();
    floodPeers.set(dev, peers);
    peers.add(entry.dst);
  }
  return { devices, floodPeers };
}

interface DesiredDevice {
  name: string;
  kind: DeviceKind;
  mtu: number;
  master: string | undefined;
  vxlan?: { vni: number; local: string };
  ownerUid?: number;
}

function desiredDevices(spec: HostNetworkSpec): DesiredDevice[] {
  const devices: DesiredDevice[] = [];
  for (const network of spec.networks) {
    const bridge = deviceName("bridge", network.id);
    devices.push({ name: bridge, kind: "bridge", mtu: network.mtu, master: undefined });
    devices.push({
      name: deviceName("vxlan", network.id),
      kind: "vxlan",
      mtu: network.mtu,
      master: bridge,
      vxlan: { vni: network.vni, local: spec.underlayAddress },
    });
    for (const port of network.ports) {
      devices.push({
        name: deviceName("tap", port.instanceId),
        kind: "tap",
        mtu: network.mtu,
        master: bridge,
        ...(port.ownerUid !== undefined ? { ownerUid: port.ownerUid } : {}),
      });
    }
  }
  return devices;
}

const LINK_KIND: Record<DeviceKind, string> = { bridge: "bridge", vxlan: "vxlan", tap: "tun" };

/** Whether an existing device can be kept (and adjusted) rather than created again. */
function reusable(
  have: ObservedDevice,
  want: DesiredDevice,
  userNames: ReadonlyMap<number, string>,
): boolean {
  if (have.linkKind !== LINK_KIND[want.kind]) return false;
  if (want.vxlan) {
    const v = have.vxlan;
    if (
      !v ||
      v.vni !== want.vxlan.vni ||
      v.local !== want.vxlan.local ||
      v.port !== VXLAN_PORT ||
      v.learning
    ) {
      return false;
    }
  }
  if (want.kind === "tap") {
    const wantUser = want.ownerUid === undefined ? undefined : String(want.ownerUid);
    const haveUser = have.tapUser;
    const same =
      haveUser === wantUser ||
      (want.ownerUid !== undefined && haveUser !== undefined && userNames.get(want.ownerUid) === haveUser);
    if (!same) return false;
  }
  return true;
}

function createSteps(device: DesiredDevice): Step[] {
  const { name } = device;
  const add: Step =
    device.kind === "bridge"
      ? { program: "ip", args: ["link", "add", name, "type", "bridge"] }
      : device.kind === "vxlan"
        ? {
            program: "ip",
            args: [
              ...["link", "add", name, "type", "vxlan", "id", String(device.vxlan?.vni)],
              ...["local", String(device.vxlan?.local), "dstport", String(VXLAN_PORT), "nolearning"],
            ],
          }
        : {
            program: "ip",
            args: [
              ...["tuntap", "add", "dev", name, "mode", "tap"],
              ...(device.ownerUid !== undefined ? ["user", String(device.ownerUid)] : []),
            ],
          };
  // No address of the host on a guest-facing device, IPv6 link-local included: guests must not
  // reach the host through their network.
  return [add, { program: "ip", args: ["link", "set", "dev", name, "addrgenmode", "none"] }];
}

/** The commands that take `host` to `spec`; empty when it is there already. */
export function planHostNetwork(
  host: ObservedHost,
  spec: HostNetworkSpec,
  /** uid → user name, for comparing a tap's owner as ip prints it. */
  userNames: ReadonlyMap<number, string> = new Map(),
): Step[] {
  const wanted = desiredDevices(spec);
  const wantedByName = new Map(wanted.map((d) => [d.name, d]));
  const deletions: Step[] = [];
  const creations: Step[] = [];
  const adjustments: Step[] = [];
  const present = new Set<string>();

  // Devices of ours that nothing wants any more go first (ports before the bridges they sit in).
  const order: DeviceKind[] = ["tap", "vxlan", "bridge"];
  const stale = [...host.devices.values()]
    .filter((d) => d.owned && !wantedByName.has(d.name))
    .sort((a, b) => order.indexOf(a.owned as DeviceKind) - order.indexOf(b.owned as DeviceKind));
  for (const device of stale) deletions.push({ program: "ip", args: ["link", "del", "dev", device.name] });

  for (const want of wanted) {
    const have = host.devices.get(want.name);
    if (have && reusable(have, want, userNames)) {
      present.add(want.name);
      if (have.mtu !== want.mtu) adjustments.push(setLink(want.name, ["mtu", String(want.mtu)]));
      if (have.master !== want.master) {
        adjustments.push(setLink(want.name, want.master ? ["master", want.master] : ["nomaster"]));
      }
      if (!have.up) adjustments.push(setLink(want.name, ["up"]));
      continue;
    }
    if (have) deletions.push({ program: "ip", args: ["link", "del", "dev", want.name] });
    creations.push(...createSteps(want));
    adjustments.push(
      setLink(want.name, ["mtu", String(want.mtu), ...(want.master ? ["master", want.master] : []), "up"]),
    );
  }

  // Flood entries: one per peer on each tunnel (head-end replication of broadcast and unknown
  // unicast), so any number of datacenters share one segment without multicast on the underlay.
  const floods: Step[] = [];
  for (const network of spec.networks) {
    if (network.peers === undefined) continue;
    const vxlan = deviceName("vxlan", network.id);
    const have = present.has(vxlan) ? (host.floodPeers.get(vxlan) ?? new Set<string>()) : new Set<string>();
    const want = new Set(network.peers);
    for (const peer of want) {
      if (!have.has(peer)) {
        floods.push({ program: "bridge", args: ["fdb", "append", FLOOD_MAC, "dev", vxlan, "dst", peer] });
      }
    }
    for (const peer of have) {
      if (!want.has(peer)) {
        floods.push({ program: "bridge", args: ["fdb", "del", FLOOD_MAC, "dev", vxlan, "dst", peer] });
      }
    }
  }
  return [...deletions, ...creations, ...adjustments, ...floods];
}

function setLink(name: string, settings: string[]): Step {
  return { program: "ip", args: ["link", "set", "dev", name, ...settings] };
}

export const NFT_TABLE = "globalvm";

/**
 * The host's nftables rules for guest networks, as one `nft -f` script that replaces globalvm's
 * tables atomically (declare, delete, define: the kernel applies the file as one transaction).
 * - bridge family, forward: a port sends only from its own MAC and IPv4 address (ARP included),
 *   and only IPv4 and ARP, so a guest cannot pose as another or reach anything by spoofing;
 * - bridge family, input: no frame from a guest port or a tunnel is delivered to the host, so a
 *   guest can neither reach a host address nor use the host as a router to another network;
 * - inet family, input: the same at the IP layer, should the bridge ever get an address;
 * - inet family, firewall: bridged IPv4 passes the inet hooks (br_netfilter, on by default in
 *   every namespace), with the bridge as both interfaces. Each network gets its own conntrack
 *   zone, so equal addresses in two projects' networks never share a connection; a packet
 *   leaving a network's bridge toward one of this host's guests of that network goes through
 *   the network's rules (established flows first, then the rules in order, then the default,
 *   then drop). Traffic toward another host's guest is judged there, by its destination host.
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
  const guarded = spec.networks.filter((network) => network.firewall && network.ports.length > 0);
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
    `    iifname { ${tapGlob}, ${vxlanGlob} } drop`,
    "  }",
    "}",
    ...resetInet,
    `table inet ${NFT_TABLE} {`,
    "  chain input {",
    "    type filter hook input priority 0; policy accept;",
    `    iifname ${bridgeGlob} drop`,
    "  }",
    "  chain prerouting {",
    "    type filter hook prerouting priority raw; policy accept;",
    ...spec.networks.map(
      (network) =>
        `    iifname "${deviceName("bridge", network.id)}" ct zone set ${conntrackZone(network.vni)}`,
    ),
    "  }",
    "  chain forward {",
    "    type filter hook forward priority 0; policy accept;",
    ...guarded.map((network) => {
      const bridge = deviceName("bridge", network.id);
      const local = network.ports.map((port) => port.address).join(", ");
      return `    oifname "${bridge}" ip daddr { ${local} } jump ${firewallChain(network.id)}`;
    }),
    "  }",
    ...guarded.flatMap((network) => firewallChainLines(network)),
    "}",
  ];
  return `${lines.join("\n")}\n`;
}

/** A network's conntrack zone (1 to 65535), from its VNI: the same on every host, every time. */
export function conntrackZone(vni: number): number {
  return ((vni - 1) % 65_535) + 1;
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
