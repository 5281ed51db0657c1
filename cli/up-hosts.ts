// The datacenter hosts of `globalvm up`: each datacenter's guests, bridges, tunnels and rules
// live in a network namespace of their own, and the namespaces are joined by a bridge in one
// more namespace that stands for the WAN, so traffic between datacenters really crosses the
// VXLAN overlay. The managers stay in up's process (their HTTP on loopback, as without
// namespaces) and reach into their host with --guest-network-netns's machinery. Nothing outside
// these namespaces is touched; Ctrl-C deletes them, and with them every device and rule inside.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { resolve } from "node:path";
import { metadataSocketDir, namespacePath } from "../regional-manager/network/namespace-host.ts";

export interface UpHost {
  datacenter: string;
  /** The host agent this namespace is (up --hosts-per-datacenter); absent: the datacenter's manager's. */
  host?: string;
  /** The namespace standing for the datacenter's host. */
  netns: string;
  /** The host's address on the WAN, where other datacenters' tunnels arrive. */
  underlay: string;
}

export interface UpHosts {
  wan: string;
  hosts: UpHost[];
}

/**
 * RFC 2544's benchmarking range: reserved, never routed, unlikely to be a LAN's. It exists only
 * inside the WAN namespace.
 */
const UNDERLAY_PREFIX = "198.18.0.";
const UNDERLAY_BITS = 24;

/**
 * Names follow from the data dir, so a second `up` on it finds (and adopts) the first's. One
 * host per datacenter, its manager's; with host agents, one more per agent (host-1 … host-N),
 * the manager's then being the datacenter's gateway (its groups' exposed ports).
 */
export function planUpHosts(
  dataDir: string,
  datacenters: readonly string[],
  hostsPerDatacenter = 0,
): UpHosts {
  const places = datacenters.flatMap((datacenter) => [
    { datacenter },
    ...Array.from({ length: hostsPerDatacenter }, (_, i) => ({ datacenter, host: `host-${i + 1}` })),
  ]);
  if (places.length > 250) throw new Error("up runs at most 250 hosts with guest networks");
  const tag = createHash("sha256").update(resolve(dataDir)).digest("hex").slice(0, 6);
  return {
    wan: `gvup-${tag}-wan`,
    hosts: places.map((place, index) => ({
      ...place,
      netns: `gvup-${tag}-${index}`,
      underlay: `${UNDERLAY_PREFIX}${index + 1}`,
    })),
  };
}

/** The WAN bridge's port of a host: interface names hold 15 bytes. */
function wanPortName(hosts: UpHosts, index: number): string {
  return `gvu${hosts.wan.slice(5, 11)}w${index}`;
}

// Linux capability numbers (linux/capability.h).
const CAP_NET_ADMIN = 12n;
const CAP_SYS_ADMIN = 21n;

export interface HostFacts {
  /** The effective capability set, as /proc/self/status prints it (hex). */
  capEff: string | undefined;
  onPath(program: string): boolean;
}

/** What keeps up from giving guests networks, each named; empty when nothing does. */
export function guestNetworkBlockers(facts: HostFacts): string[] {
  const blockers: string[] = [];
  const caps = facts.capEff === undefined ? 0n : BigInt(`0x${facts.capEff}`);
  const lacking = [
    ...((caps >> CAP_NET_ADMIN) & 1n ? [] : ["CAP_NET_ADMIN"]),
    ...((caps >> CAP_SYS_ADMIN) & 1n ? [] : ["CAP_SYS_ADMIN"]),
  ];
  if (lacking.length > 0) blockers.push(`${lacking.join(" and ")} (run up as root)`);
  const programs = [
    ["ip", "iproute2"],
    ["bridge", "iproute2"],
    ["nft", "nftables"],
    ["nsenter", "util-linux"],
    ["setpriv", "util-linux"],
    ["socat", "socat"],
  ] as const;
  const absent = programs.filter(([program]) => !facts.onPath(program));
  if (absent.length > 0) {
    const packages = [...new Set(absent.map(([, pkg]) => pkg))];
    blockers.push(`${absent.map(([program]) => program).join(", ")} (apt-get install ${packages.join(" ")})`);
  }
  return blockers;
}

export function capEffOfThisProcess(): string | undefined {
  try {
    return /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1];
  } catch {
    return undefined;
  }
}

function run(...argv: string[]): string {
  return execFileSync(argv[0] as string, argv.slice(1), {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
}

function succeeds(...argv: string[]): boolean {
  try {
    run(...argv);
    return true;
  } catch {
    return false;
  }
}

function ensureNamespace(netns: string): void {
  if (!existsSync(namespacePath(netns))) run("ip", "netns", "add", netns);
  run("ip", "-n", netns, "link", "set", "lo", "up");
}

/**
 * Makes the namespaces, the WAN bridge and each host's uplink, keeping what is already there
 * (guests left running by an up that was killed are still in their host's namespace).
 */
export function createUpHosts(hosts: UpHosts): void {
  ensureNamespace(hosts.wan);
  if (!succeeds("ip", "-n", hosts.wan, "link", "show", "wan")) {
    run("ip", "-n", hosts.wan, "link", "add", "wan", "type", "bridge");
  }
  run("ip", "-n", hosts.wan, "link", "set", "wan", "up");
  hosts.hosts.forEach((host, index) => {
    ensureNamespace(host.netns);
    const port = wanPortName(hosts, index);
    if (!succeeds("ip", "-n", host.netns, "link", "show", "uplink")) {
      // A stale WAN end (its host end gone with a deleted namespace) would block the name.
      if (succeeds("ip", "-n", hosts.wan, "link", "show", port))
        run("ip", "-n", hosts.wan, "link", "del", port);
      run(
        ...["ip", "link", "add", "uplink", "netns", host.netns, "type", "veth"],
        ...["peer", "name", port, "netns", hosts.wan],
      );
    }
    run("ip", "-n", hosts.wan, "link", "set", port, "master", "wan", "up");
    run("ip", "-n", host.netns, "addr", "replace", `${host.underlay}/${UNDERLAY_BITS}`, "dev", "uplink");
    run("ip", "-n", host.netns, "link", "set", "uplink", "up");
  });
}

/**
 * Deletes the namespaces (their devices and rules go with them) and the metadata socket dirs of
 * the managers' and agents' data dirs.
 */
export function removeUpHosts(hosts: UpHosts, guestDataDirs: readonly string[]): void {
  for (const netns of [...hosts.hosts.map((h) => h.netns), hosts.wan]) {
    if (existsSync(namespacePath(netns))) succeeds("ip", "netns", "del", netns);
  }
  for (const dir of guestDataDirs) rmSync(metadataSocketDir(dir), { recursive: true, force: true });
}
