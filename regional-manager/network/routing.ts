// The host's IP routing toward guests, which exists only for endpoints. A bridge normally has no
// address: guests never reach the host. A network with endpoints on this host gets the
// datacenter's gateway address on its bridge (a /32, no route in the main table) and a routing
// table of its own, chosen by a firewall mark the endpoint's NAT rules set (nft.ts): two projects'
// networks may use the same range on one host, and each endpoint's traffic must reach its own.
// Plain functions over what `ip -j` reports; the executor (linux.ts) observes and runs.
import { formatCidr, parseIpv4 } from "../../schemas/ipv4.ts";
import type { Step } from "./plan.ts";
import { deviceName, type HostNetworkSpec, type NetworkSpec, ownedKind } from "./spec.ts";

/** The high half of every mark and routing table globalvm uses ("gv"); the low half is the network's. */
const MARK_BASE = 0x6776_0000;
/** Where globalvm's policy rules sit: after `local` (0), before `main` (32766). */
export const RULE_PRIORITY = 20_000;

/** A network's conntrack zone (1 to 65535), from its VNI: the same on every host, every time. */
export function conntrackZone(vni: number): number {
  return ((vni - 1) % 65_535) + 1;
}

/** The firewall mark, and routing table number, of a network's endpoint traffic. */
export function endpointMark(vni: number): number {
  return MARK_BASE | conntrackZone(vni);
}

function ownedMark(value: number): boolean {
  return (value & 0xffff_0000) >>> 0 === MARK_BASE;
}

export interface ObservedRouting {
  /** Per owned bridge: its IPv4 addresses, as `address/prefix`. */
  bridgeAddresses: ReadonlyMap<string, readonly string[]>;
  /** Owned tables → their routes, as `dst dev prefsrc`. */
  tables: ReadonlyMap<number, readonly string[]>;
  /** Owned policy rules, as `mark table`. */
  rules: readonly { mark: number; table: number }[];
}

interface AddrJson {
  ifname: string;
  addr_info?: { family?: string; local?: string; prefixlen?: number }[];
}
interface RuleJson {
  priority?: number;
  fwmark?: string;
  table?: string;
}
interface RouteJson {
  dst?: string;
  dev?: string;
  table?: string;
  prefsrc?: string;
}

/** Parses `ip -j -4 addr show`, `ip -j rule show` and `ip -j route show table all`. */
export function observeRouting(addrJson: string, ruleJson: string, routeJson: string): ObservedRouting {
  const bridgeAddresses = new Map<string, string[]>();
  for (const link of JSON.parse(addrJson || "[]") as AddrJson[]) {
    if (ownedKind(link.ifname) !== "bridge") continue;
    bridgeAddresses.set(
      link.ifname,
      (link.addr_info ?? [])
        .filter((a) => a.family === "inet" && a.local)
        .map((a) => `${a.local}/${a.prefixlen ?? 32}`),
    );
  }
  const tables = new Map<number, string[]>();
  for (const route of JSON.parse(routeJson || "[]") as RouteJson[]) {
    const table = Number(route.table);
    if (!Number.isInteger(table) || !ownedMark(table)) continue;
    const routes = tables.get(table) ?? [];
    routes.push(routeKey(route.dst ?? "", route.dev ?? "", route.prefsrc ?? ""));
    tables.set(table, routes);
  }
  const rules = (JSON.parse(ruleJson || "[]") as RuleJson[]).flatMap((rule) => {
    const mark = rule.fwmark === undefined ? Number.NaN : Number(rule.fwmark);
    const table = Number(rule.table);
    return rule.priority === RULE_PRIORITY && ownedMark(mark) ? [{ mark, table }] : [];
  });
  return { bridgeAddresses, tables, rules };
}

function routeKey(dst: string, dev: string, source: string): string {
  return `${dst} ${dev} ${source}`;
}

/** The network's range, from its gateway's address and the network's prefix length. */
function networkRange(gateway: NonNullable<NetworkSpec["gateway"]>): string {
  const address = parseIpv4(gateway.address);
  if (address === undefined) throw new Error(`gateway ${gateway.address} is not an IPv4 address`);
  const mask = gateway.prefixLength === 0 ? 0 : (0xffff_ffff << (32 - gateway.prefixLength)) >>> 0;
  return formatCidr({ base: (address & mask) >>> 0, prefixLength: gateway.prefixLength });
}

/** The networks that carry endpoints on this host (a gateway and at least one endpoint). */
export function routedNetworks(spec: HostNetworkSpec): NetworkSpec[] {
  return spec.networks.filter((n) => n.gateway !== undefined && (n.endpoints?.length ?? 0) > 0);
}

/**
 * The commands that give each routed network its gateway address, table and rule, and take them
 * from networks that no longer need them. Runs after the device steps (the bridges exist).
 */
export function planRouting(have: ObservedRouting, spec: HostNetworkSpec): Step[] {
  const steps: Step[] = [];
  const routed = routedNetworks(spec);
  const wantAddress = new Map<string, string>();
  const wantTables = new Map<number, string>();
  for (const network of routed) {
    const gateway = network.gateway as NonNullable<NetworkSpec["gateway"]>;
    const bridge = deviceName("bridge", network.id);
    const mark = endpointMark(network.vni);
    wantAddress.set(bridge, `${gateway.address}/32`);
    wantTables.set(mark, routeKey(networkRange(gateway), bridge, gateway.address));
  }

  for (const [bridge, addresses] of have.bridgeAddresses) {
    for (const address of addresses) {
      if (wantAddress.get(bridge) !== address) steps.push(ip(["addr", "del", address, "dev", bridge]));
    }
  }
  for (const [bridge, address] of wantAddress) {
    if ((have.bridgeAddresses.get(bridge) ?? []).includes(address)) continue;
    // No prefix route: the network's range is reached through its own table only.
    steps.push(ip(["addr", "add", address, "dev", bridge, "noprefixroute"]));
    // Replies come back marked (nft.ts); reverse-path checks must look them up with that mark.
    steps.push({ program: "sysctl", args: ["-qw", `net.ipv4.conf.${bridge}.src_valid_mark=1`] });
  }

  for (const [table, routes] of have.tables) {
    const want = wantTables.get(table);
    if (want === undefined || routes.length !== 1 || routes[0] !== want) {
      steps.push(ip(["route", "flush", "table", String(table)]));
    }
  }
  for (const [table, route] of wantTables) {
    const routes = have.tables.get(table);
    if (routes?.length === 1 && routes[0] === route) continue;
    const [dst, dev, source] = route.split(" ") as [string, string, string];
    steps.push(ip(["route", "replace", dst, "dev", dev, "src", source, "table", String(table)]));
  }

  const haveRules = new Set(have.rules.map((r) => `${r.mark}/${r.table}`));
  for (const rule of have.rules) {
    if (rule.mark !== rule.table || !wantTables.has(rule.mark)) {
      steps.push(ip(["rule", "del", ...ruleArgs(rule.mark, rule.table)]));
    }
  }
  for (const table of wantTables.keys()) {
    if (!haveRules.has(`${table}/${table}`)) steps.push(ip(["rule", "add", ...ruleArgs(table, table)]));
  }
  return steps;
}

function ruleArgs(mark: number, table: number): string[] {
  return ["fwmark", `0x${mark.toString(16)}`, "lookup", String(table), "pref", String(RULE_PRIORITY)];
}

function ip(args: string[]): Step {
  return { program: "ip", args };
}
