// bench/network.ts's two ways of wiring the same guests: globalvm's (the manager's executor,
// LinuxHostNetwork: bridge, taps and VXLAN tunnel named from the catalog IDs, nftables rules)
// and a bare one made by hand with plain `ip` commands and no nftables, using the same tap names
// so that QEMU, the driver and the guests cannot tell them apart. Also the guests' scripts, and
// the bench's side of bench/network-guests.ts.
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { lookUpUser } from "../regional-manager/compute/qemu/user.ts";
import { LinuxHostNetwork } from "../regional-manager/network/linux.ts";
import { deviceName, guestMac, type NetworkSpec, VXLAN_PORT } from "../regional-manager/network/spec.ts";
import { sh } from "../test/network/namespaces.ts";

/** The guest-facing MTU in every case: what globalvm gives guests on a 1500-byte underlay. */
export const MTU = 1450;
const VNI = 4242;
const NETWORK = "net_bench";
/** The bench network's bridge on a globalvm host. */
export const BRIDGE = deviceName("bridge", NETWORK);
export const PREFIX_LENGTH = 24;
/** The one machine shape of every guest of the bench, the stack's groups included. */
export const GUEST_MACHINE = { vcpus: 1, memoryMb: 160 };
/** Blocks the sender writes; its count comes with each round. */
export const BLOCK_BYTES = 65_536;

export interface BenchGuest {
  instanceId: string;
  networkInterface: { network: string; vni: number; address: string; prefixLength: number; mtu: number };
  metadata: Record<string, string>;
}

export interface GuestAt {
  instanceId: string;
  address: string;
}

export const benchGuest = (guest: GuestAt, script: string): BenchGuest => ({
  instanceId: guest.instanceId,
  networkInterface: {
    network: NETWORK,
    vni: VNI,
    address: guest.address,
    prefixLength: PREFIX_LENGTH,
    mtu: MTU,
  },
  metadata: { "startup-script": script, "bench-go": "0" },
});

/**
 * A host's guests on globalvm's networking: what a manager's reconcile builds for them; with
 * `exposed`, the network's gateway, endpoints and firewall too (a group with endpoints here).
 */
export async function wireGlobalvm(
  netns: string,
  underlay: string,
  peers: string[],
  guests: GuestAt[],
  exposed?: Pick<NetworkSpec, "gateway" | "endpoints" | "firewall">,
): Promise<void> {
  const ownerUid = lookUpUser("nobody").uid;
  await new LinuxHostNetwork({ netns }).reconcile({
    underlayAddress: underlay,
    networks: [
      {
        id: NETWORK,
        vni: VNI,
        mtu: MTU,
        peers,
        ports: guests.map((g) => ({ ...g, mac: guestMac(g.instanceId), ownerUid })),
        ...exposed,
      },
    ],
  });
}

/**
 * The same guests on a bridge and taps made by hand, and, across datacenters, a point-to-point
 * VXLAN with the kernel's defaults (learning on): what an operator would wire without globalvm.
 */
export function wireBare(netns: string, guests: GuestAt[], tunnel?: { local: string; remote: string }): void {
  const ip = (...args: string[]) => sh("ip", "-n", netns, ...args);
  ip("link", "add", "br0", "type", "bridge");
  ip("link", "set", "br0", "up");
  const uid = String(lookUpUser("nobody").uid);
  for (const guest of guests) {
    const tap = deviceName("tap", guest.instanceId);
    ip("tuntap", "add", "dev", tap, "mode", "tap", "user", uid);
    ip("link", "set", tap, "master", "br0", "up");
  }
  if (tunnel) {
    ip(
      ...["link", "add", "vx", "type", "vxlan", "id", String(VNI)],
      ...["local", tunnel.local, "remote", tunnel.remote, "dstport", String(VXLAN_PORT)],
    );
    ip("link", "set", "vx", "master", "br0", "up");
  }
}

/**
 * An HTTP server on port 80 (busybox httpd, a process per connection, as test/support's SERVE)
 * whose one page is `name`, so that a client sees which guest answered; says bench/http once up.
 */
export const httpServer = (name: string) =>
  [
    `mkdir -p /www && echo ${name} >/www/index.html`,
    "httpd -h /www -p 80 && guest-attribute bench/http yes",
  ].join("\n");

const NOW = "now() { tr -d . </proc/uptime | cut -d ' ' -f 1; }";

/**
 * The receiving guest: busybox nc hands each connection on port 5001 to /tmp/recv as its stdin
 * and stdout (-e), so dd reads the socket itself in 64 KiB reads; piped through nc, whose buffer
 * is 1 KiB, the guest's emulated CPU spent its time on nc's copies and hid the host's path. The
 * transfer is timed here, from the connection to the sender's close once the last byte is in,
 * from /proc/uptime (busybox date has no %N): centiseconds, 0.2 % of a 5-second transfer.
 * Publishes bench/received "ROUND MILLISECONDS", the round being the first line the sender sends.
 */
export const RECEIVER = [
  "cat >/tmp/recv <<'EOF'",
  "#!/bin/sh",
  NOW,
  "read round",
  "t0=$(now)",
  `dd of=/dev/null bs=${BLOCK_BYTES} 2>/dev/null`,
  "t1=$(now)",
  'guest-attribute bench/received "$round $(((t1 - t0) * 10))"',
  "EOF",
  "chmod +x /tmp/recv",
  "nc -ll -p 5001 -e /tmp/recv >/dev/null 2>&1 &",
  "sleep 1",
  "guest-attribute bench/ready yes",
].join("\n");

/**
 * The sending guest: waits for the metadata value bench-go ("ROUND COUNT") to change, then sends
 * the round's number and COUNT blocks of zeros to the peer (dd writing to the socket, as the
 * receiver reads it) and pings it, and publishes bench/result "ROUND ok|fail BYTES RTT_MS".
 */
export const sender = (peer: string) =>
  [
    'md() { wget -q -O - --header "Metadata-Flavor: Google" "http://169.254.169.254/computeMetadata/v1/instance/attributes/$1"; }',
    "cat >/tmp/send <<'EOF'",
    "#!/bin/sh",
    'echo "$1"',
    `exec dd if=/dev/zero bs=${BLOCK_BYTES} count="$2" 2>/dev/null`,
    "EOF",
    "chmod +x /tmp/send",
    "last=0",
    "guest-attribute bench/ready yes",
    "while :; do",
    '  go="$(md bench-go)"',
    '  if [ -n "$go" ] && [ "$go" != "$last" ]; then',
    '    last="$go"; set -- $go',
    `    if nc -w 5 ${peer} 5001 -e /tmp/send "$1" "$2"; then ok=ok; else ok=fail; fi`,
    `    rtt="$(ping -q -c 20 -i 0.2 ${peer} | sed -n 's|.*= [0-9.]*/\\([0-9.]*\\)/.*|\\1|p')"`,
    `    guest-attribute bench/result "$1 $ok $(($2 * ${BLOCK_BYTES})) \${rtt:-none}"`,
    "  else",
    // A change that lands between the read above and this wait is seen at the next read, 2 s on.
    '    md "bench-go?wait_for_change=true&timeout_sec=2" >/dev/null',
    "  fi",
    "done",
  ].join("\n");

/** The bench's handle on a bench/network-guests.ts process: drives its guests, follows them. */
export class GuestHost {
  readonly #child: ChildProcess;
  readonly #attributes = new Map<string, Record<string, string>>();
  readonly #states = new Map<string, string>();
  readonly #listeners = new Set<() => void>();
  readonly #exited: Promise<void>;
  consoles: Record<string, string> = {};
  readonly netns: string;

  constructor(netns: string, dataDir: string, guests: BenchGuest[]) {
    this.netns = netns;
    const script = join(import.meta.dirname, "network-guests.ts");
    this.#child = spawn(
      "ip",
      ["netns", "exec", netns, process.execPath, script, dataDir, JSON.stringify(guests)],
      { stdio: ["pipe", "pipe", "inherit"] },
    );
    createInterface({ input: this.#child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
      const event = JSON.parse(line) as {
        instanceId?: string;
        state?: string;
        attributes?: Record<string, string>;
        consoles?: Record<string, string>;
      };
      if (event.consoles) this.consoles = event.consoles;
      if (event.instanceId) {
        this.#attributes.set(event.instanceId, event.attributes ?? {});
        this.#states.set(event.instanceId, event.state ?? "");
      }
      for (const listener of this.#listeners) listener();
    });
    this.#exited = new Promise((resolve) => this.#child.once("exit", () => resolve()));
    this.#exited.then(() => {
      for (const listener of this.#listeners) listener();
    });
  }

  set(instanceId: string, metadata: Record<string, string>): void {
    this.#child.stdin?.write(`${JSON.stringify({ instanceId, metadata })}\n`);
  }

  /** The guest attribute `key` of a guest once `accept` takes it; rejects on timeout or a dead guest. */
  waitFor(instanceId: string, key: string, accept: (value: string) => boolean, timeoutMs: number) {
    return new Promise<string>((resolve, reject) => {
      const check = () => {
        const value = this.#attributes.get(instanceId)?.[key];
        const state = this.#states.get(instanceId);
        if (value !== undefined && accept(value)) return done(() => resolve(value));
        if (state === "failed" || state === "stopped" || this.#child.exitCode !== null) {
          done(() => reject(new Error(`${this.netns}/${instanceId} is ${state ?? "gone"}, no ${key}`)));
        }
      };
      const timer = setTimeout(
        () => done(() => reject(new Error(`${this.netns}/${instanceId}: no ${key} in ${timeoutMs} ms`))),
        timeoutMs,
      );
      const done = (settle: () => void) => {
        clearTimeout(timer);
        this.#listeners.delete(check);
        settle();
      };
      this.#listeners.add(check);
      check();
    });
  }

  /** Deletes the guests (the process does, when its stdin ends), SIGKILL if it takes too long. */
  async close(): Promise<void> {
    this.#child.stdin?.end();
    const timer = setTimeout(() => this.#child.kill("SIGKILL"), 30_000);
    await this.#exited;
    clearTimeout(timer);
  }
}
