// Real guests on private networks: a namespace stands for one datacenter's host, the host's
// networking is built by the manager's executor (LinuxHostNetwork), and QEMU guests boot in it
// with a NIC on their network's bridge, configured from their metadata. What they can reach is
// asked of the guests themselves, through their startup-scripts.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lookUpUser } from "../../regional-manager/compute/qemu/user.ts";
import { LinuxHostNetwork } from "../../regional-manager/network/linux.ts";
import { guestMac, type HostNetworkSpec } from "../../regional-manager/network/spec.ts";
import { ensureGuestImage, REPO_ROOT } from "../support/compute.ts";
import type { GuestPlan } from "./guest-network-process.ts";
import { loneUplink } from "./namespaces.ts";

const tag = randomBytes(3).toString("hex");
const host = `gvh-${tag}`;
const MTU = 1450;
const nobody = lookUpUser("nobody").uid;

function sh(...argv: string[]): string {
  return execFileSync(argv[0] as string, argv.slice(1), {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
}

const port = (instanceId: string, address: string) => ({
  instanceId,
  mac: guestMac(instanceId),
  address,
  ownerUid: nobody,
});

// Two networks with the same range: only their bridges keep them apart.
const spec: HostNetworkSpec = {
  underlayAddress: "192.0.2.1",
  networks: [
    {
      id: "net_web",
      vni: 4101,
      mtu: MTU,
      peers: [],
      ports: [port("web-a", "10.30.0.2"), port("web-b", "10.30.0.3")],
    },
    { id: "net_other", vni: 4102, mtu: MTU, peers: [], ports: [port("other-c", "10.30.0.4")] },
  ],
};

const nic = (network: string, address: string) => ({
  network,
  vni: spec.networks.find((n) => n.id === network)?.vni as number,
  address,
  prefixLength: 24,
  mtu: MTU,
});

/**
 * `fetch ADDRESS` GETs / over TCP port 80 with nc, as guest-attribute talks HTTP: the guest's
 * static busybox wget (with -T) segfaulted on these requests here, while ping and nc work.
 */
const FETCH = `fetch() { printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 "$1" 80; }`;

/** A script that publishes `key` = ok when `command` succeeds within its tries, else failed. */
const probe = (key: string, command: string, tries: number) =>
  `ok=failed; for i in $(seq 1 ${tries}); do if ${command}; then ok=ok; break; fi; sleep 1; done; guest-attribute ${key} $ok`;

/** Serves hello-from-NAME, then reaches the peer at `peer` by ICMP and TCP (both boot together). */
const serveAndReach = (name: string, peer: string, peerName: string) =>
  [
    `mkdir -p /www && echo hello-from-${name} >/www/index.html`,
    "httpd -h /www -p 80 && guest-attribute net/serving yes",
    FETCH,
    probe("net/ping", `ping -c 1 -W 2 ${peer} >/dev/null`, 60),
    probe("net/tcp", `fetch ${peer} | grep -q hello-from-${peerName}`, 60),
  ].join("\n");

describe("guests on a private network in one datacenter", () => {
  let dataDir: string;
  let outcome: { results: Record<string, Record<string, string>>; consoles: Record<string, string> };

  beforeAll(async () => {
    ensureGuestImage();
    dataDir = mkdtempSync(join(tmpdir(), "gvm-net-guests-"));
    sh("ip", "netns", "add", host);
    sh("ip", "-n", host, "link", "set", "lo", "up");
    // The underlay address the tunnels start from (no peers here: one datacenter).
    loneUplink(host, "192.0.2.1");
    await new LinuxHostNetwork({ netns: host }).reconcile(spec);

    const stages: GuestPlan[][] = [
      // Both ways: each of web-a and web-b serves and reaches the other.
      [
        {
          instanceId: "web-a",
          networkInterface: nic("net_web", "10.30.0.2"),
          startupScript: serveAndReach("web-a", "10.30.0.3", "web-b"),
          awaits: ["net/serving", "net/ping", "net/tcp"],
        },
        {
          instanceId: "web-b",
          networkInterface: nic("net_web", "10.30.0.3"),
          startupScript: serveAndReach("web-b", "10.30.0.2", "web-a"),
          awaits: ["net/serving", "net/ping", "net/tcp"],
        },
      ],
      [
        {
          instanceId: "other-c",
          networkInterface: nic("net_other", "10.30.0.4"),
          startupScript: [
            FETCH,
            probe("net/ping", "ping -c 1 -W 2 10.30.0.2 >/dev/null", 5),
            probe("net/tcp", "fetch 10.30.0.2 | grep -q HTTP", 3),
          ].join("\n"),
          awaits: ["net/ping", "net/tcp"],
        },
      ],
    ];
    const output = execFileSync(
      "ip",
      [
        ...["netns", "exec", host],
        ...[
          process.execPath,
          join(REPO_ROOT, "test/network/guest-network-process.ts"),
          dataDir,
          JSON.stringify(stages),
        ],
      ],
      { encoding: "utf8", timeout: 560_000, stdio: ["ignore", "pipe", "inherit"] },
    );
    outcome = JSON.parse(output.trim().split("\n").at(-1) as string);
  }, 600_000);

  afterAll(() => {
    try {
      sh("ip", "netns", "del", host);
    } catch {
      // never made
    }
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it("configures each guest's NIC from its metadata", () => {
    expect(outcome.consoles["web-a"]).toMatch(/GLOBALVM-NETWORK eth1 10\.30\.0\.2/);
    expect(outcome.consoles["web-b"]).toMatch(/GLOBALVM-NETWORK eth1 10\.30\.0\.3/);
  });

  it("guests of one network reach each other by address, both ways: ICMP and TCP", () => {
    for (const guest of ["web-a", "web-b"]) {
      expect(outcome.results[guest]).toMatchObject({
        "net/serving": "yes",
        "net/ping": "ok",
        "net/tcp": "ok",
      });
    }
  });

  it("a guest of another network with the same range exchanges not one packet with them", () => {
    expect(outcome.results["other-c"]).toMatchObject({ "net/ping": "failed", "net/tcp": "failed" });
  });
});
