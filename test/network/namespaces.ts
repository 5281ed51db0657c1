// Network namespaces for the networking tests: each stands for a host (a datacenter's, or the
// WAN between them). Nothing outside the namespaces a test makes is touched; the test removes
// them at the end with removeNamespaces.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";

export function sh(...argv: string[]): string {
  return execFileSync(argv[0] as string, argv.slice(1), {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
}

export function addNamespace(name: string, created: string[]): void {
  sh("ip", "netns", "add", name);
  created.push(name);
  sh("ip", "-n", name, "link", "set", "lo", "up");
}

export function removeNamespaces(created: string[]): void {
  for (const name of created.reverse()) {
    try {
      sh("ip", "netns", "del", name);
    } catch {
      // already gone
    }
  }
}

/** The WAN: a bridge named `wan` in its namespace, optionally with an address of its own. */
export function makeWan(wan: string, address?: string): void {
  sh("ip", "-n", wan, "link", "add", "wan", "type", "bridge");
  if (address) sh("ip", "-n", wan, "addr", "add", `${address}/24`, "dev", "wan");
  sh("ip", "-n", wan, "link", "set", "wan", "up");
}

/** Plugs a host into the WAN: its `uplink` (a veth whose other end is in the WAN's bridge) gets `address`. */
export function joinWan(host: string, wan: string, address: string): void {
  const end = `w${host}`.slice(0, 15);
  sh("ip", "link", "add", "uplink", "netns", host, "type", "veth", "peer", "name", end, "netns", wan);
  sh("ip", "-n", wan, "link", "set", end, "master", "wan", "up");
  sh("ip", "-n", host, "addr", "add", `${address}/24`, "dev", "uplink");
  sh("ip", "-n", host, "link", "set", "uplink", "up");
}

/** A host alone (one datacenter) still has an underlay address for its tunnels to start from. */
export function loneUplink(host: string, address: string): void {
  sh("ip", "-n", host, "link", "add", "uplink", "type", "veth", "peer", "name", "uplink-end");
  sh("ip", "-n", host, "link", "set", "uplink-end", "up");
  sh("ip", "-n", host, "addr", "add", `${address}/24`, "dev", "uplink");
  sh("ip", "-n", host, "link", "set", "uplink", "up");
}

/**
 * A "guest": namespace `name` plugged into `bridge` of `host` through a veth, with `ip`/16 on its
 * eth0, answering its name on each of `ports` (busybox nc). Returns the servers, to be killed.
 */
export function plugGuest(
  options: { name: string; host: string; bridge: string; ip: string; ports: readonly string[] },
  created: string[],
): ChildProcess[] {
  const { name, host, bridge, ip } = options;
  addNamespace(name, created);
  const port = `p${name.slice(3)}`.slice(0, 15);
  sh("ip", "link", "add", "eth0", "netns", name, "type", "veth", "peer", "name", port, "netns", host);
  sh("ip", "-n", name, "addr", "add", `${ip}/16`, "dev", "eth0");
  sh("ip", "-n", name, "link", "set", "eth0", "mtu", "1450", "up");
  sh("ip", "-n", host, "link", "set", port, "master", bridge, "mtu", "1450", "up");
  // -ll: keep listening after each connection.
  return options.ports.map((listen) =>
    spawn("ip", ["netns", "exec", name, "busybox", "nc", "-ll", "-p", listen, "-e", "echo", name], {
      stdio: "ignore",
    }),
  );
}

/** What answers at `to`:`port` from namespace `from` within a second or two; "" when nothing does. */
export function tcpAnswer(from: string, to: string, port: number): string {
  try {
    return sh(
      ...["ip", "netns", "exec", from, "busybox", "timeout", "2"],
      ...["busybox", "nc", "-w", "1", to, String(port)],
    ).trim();
  } catch {
    return "";
  }
}

/**
 * The test side of a stack flow: makes the WAN namespace (with `controlPlaneHost` on its bridge)
 * and each region's host joined to it, runs `script` (a file of this repository) in the WAN
 * namespace with the stack's config as its argument, and returns the JSON of its last line.
 */
export function runFlowInWan<T>(options: {
  script: string;
  wan: string;
  controlPlaneHost: string;
  regions: readonly { netns: string; underlay: string }[];
  created: string[];
  timeoutMs: number;
}): T {
  const { wan, controlPlaneHost, regions, created } = options;
  addNamespace(wan, created);
  makeWan(wan, controlPlaneHost);
  for (const region of regions) {
    addNamespace(region.netns, created);
    joinWan(region.netns, wan, region.underlay);
  }
  const config = JSON.stringify({ controlPlaneHost, regions });
  const output = execFileSync("ip", ["netns", "exec", wan, process.execPath, options.script, config], {
    encoding: "utf8",
    timeout: options.timeoutMs,
    stdio: ["ignore", "pipe", "inherit"],
    maxBuffer: 64 << 20,
  });
  return JSON.parse(output.trim().split("\n").at(-1) as string) as T;
}
