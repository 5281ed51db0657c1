// Guests on host agents on their network, with real processes and real guests: two host agents
// of one datacenter, each a network namespace on a shared underlay (a bridge in a third
// namespace), attach their guests to the project's network. A client on one host reaches a web
// guest on the other through the hosts' VXLAN tunnels, which the manager told each agent about,
// and resolves web's internal names through its agent and the manager;
// each network's firewall reaches the agents; and a client whose host is lost is recreated on
// the other host with the same address.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readInstanceRecord } from "../../regional-manager/compute/instance-record.ts";
import { deviceName } from "../../regional-manager/network/spec.ts";
import { addNamespace, joinWan, makeWan, removeNamespaces, sh } from "../network/namespaces.ts";
import { ensureGuestImage } from "../support/compute.ts";
import { FETCH_WEB, resolveNames, SERVE } from "../support/guest-scripts.ts";
import { type Stack, startStack } from "../support/stack.ts";
import { createGroup, createGuestImage, expectSucceeded, listInstances } from "../support/vm-groups.ts";

const tag = randomBytes(3).toString("hex");
const wan = `gvw-${tag}`;
const HOSTS = [
  { name: "host-1", netns: `gvh1-${tag}`, underlay: "198.51.100.1" },
  { name: "host-2", netns: `gvh2-${tag}`, underlay: "198.51.100.2" },
];
const created: string[] = [];
let stack: Stack;

interface HostedInstance {
  id: string;
  name: string;
  state: string;
  host: string | null;
  address: string | null;
  network_ip: string | null;
  guest_attributes: Record<string, string>;
}

const instancesOf = async (groupId: string) =>
  (await listInstances(stack, groupId)) as unknown as HostedInstance[];

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms\n${stack.logs()}`);
}

beforeAll(async () => {
  ensureGuestImage();
  addNamespace(wan, created);
  makeWan(wan);
  for (const host of HOSTS) {
    addNamespace(host.netns, created);
    joinWan(host.netns, wan, host.underlay);
  }
  stack = await startStack({
    name: "hostnet",
    regions: ["us-east"],
    hostsPerRegion: 2,
    hostArgs: (_region, name) => {
      const host = HOSTS.find((h) => h.name === name) as (typeof HOSTS)[number];
      return [
        ...["--vcpus", "2", "--memory-mb", "2048"],
        ...["--guest-network-underlay", host.underlay, "--guest-network-netns", host.netns],
      ];
    },
    env: { GLOBALVM_HEARTBEAT_INTERVAL_MS: "1000", GLOBALVM_HOST_DOWN_AFTER_MS: "6000" },
  });
  await until("both hosts up", 60_000, async () => {
    const answer = await stack.call("GET", "/v1/datacenters/us-east-a/hosts", stack.adminToken);
    const up = (answer.body.items ?? []).filter((h: { state: string }) => h.state === "up");
    return up.length === 2 ? true : undefined;
  });
}, 180_000);

afterAll(async () => {
  await stack?.stop();
  removeNamespaces(created);
}, 60_000);

describe("guests on host agents on their network", () => {
  let web: HostedInstance;
  let client: HostedInstance;
  let clientGroup: string;

  it("a client on one host reaches web on the other over the hosts' tunnels", async () => {
    const image = await createGuestImage(stack, "guest", "us-east");
    // One web guest on each host; the client then goes to host-1 (both hold the image and are
    // as loaded: the name decides) and is handed the address of the web guest on host-2.
    const webGroup = await createGroup(stack, {
      name: "web",
      image,
      region: "us-east",
      size: 2,
      spread_hosts: true,
      metadata: { "startup-script": SERVE },
    });
    await expectSucceeded(stack, webGroup.operationId, 300_000);
    const webs = await instancesOf(webGroup.groupId);
    expect(webs.map((i) => i.host).sort()).toEqual(["host-1", "host-2"]);
    const ordinal = webs.findIndex((i) => i.host === "host-2");
    web = webs[ordinal] as HostedInstance;
    const clientCreate = await createGroup(stack, {
      name: "client",
      image,
      region: "us-east",
      size: 1,
      metadata: {
        "startup-script": [
          resolveNames("web", {
            peer: `web-${ordinal}.web.us-east.acme.globalvm.internal`,
            group: "web.us-east.acme.globalvm.internal",
          }),
          FETCH_WEB,
        ].join("\n"),
      },
      metadata_from: { web: { vm_group: webGroup.groupId, instance: ordinal, attribute: "address" } },
    });
    clientGroup = clientCreate.groupId;
    await expectSucceeded(stack, clientCreate.operationId, 300_000);
    client = await until("the client's fetch", 120_000, async () => {
      const [found] = await instancesOf(clientGroup);
      return found?.guest_attributes["net/tcp"] && found.guest_attributes["dns/group"] ? found : undefined;
    });

    expect(client.host).toBe("host-1");
    expect(web.address).toMatch(/^10\.128\.\d+\.\d+$/);
    expect(web.address).toBe(web.network_ip);
    expect(client.address).toBe(client.network_ip);
    expect(client.guest_attributes["net/peer"]).toBe(web.address);
    expect(client.guest_attributes["net/tcp"], stack.logs()).toBe("ok");
    // Its DNS queries reach the catalog through its agent and the manager.
    expect(client.guest_attributes["dns/peer"]).toBe(web.address);
    expect(webs.map((i) => i.address)).toContain(client.guest_attributes["dns/group"]);
  }, 420_000);

  it("each host has its guests' taps, tunnels to the other host, and the network's firewall", () => {
    const network = JSON.parse(
      readFileSync(join(stack.dir, "us-east-a-host-1", "network-firewalls.json"), "utf8"),
    ) as Record<string, { otherwise_allow: string[] }>;
    const [networkId] = Object.keys(network);
    expect(networkId).toMatch(/^net_/);
    for (const host of HOSTS) {
      const other = HOSTS.find((h) => h !== host) as (typeof HOSTS)[number];
      const vxlan = deviceName("vxlan", networkId as string);
      const floods = sh("ip", "netns", "exec", host.netns, "bridge", "fdb", "show", "dev", vxlan);
      expect(floods).toContain(`dst ${other.underlay}`);
      expect(sh("ip", "netns", "exec", host.netns, "nft", "list", "tables")).toMatch(/globalvm/);
      const guest = host.name === "host-1" ? client : web;
      expect(sh("ip", "-n", host.netns, "link", "show", deviceName("tap", guest.id))).toContain("UP");
    }
  });

  it("recreates a client whose host is lost on the other host, with the same address", async () => {
    const lost = HOSTS.find((h) => h.name === client.host) as (typeof HOSTS)[number];
    const record = readInstanceRecord(
      join(stack.dir, `us-east-a-${lost.name}`, "compute", "instances", client.id),
    );
    // The machine is gone: its agent and its guest with it.
    await stack.kill(`us-east/${lost.name}`);
    if (record.pid) process.kill(record.pid, "SIGKILL");
    const moved = await until("the client recreated elsewhere", 120_000, async () => {
      const [found] = await instancesOf(clientGroup);
      return found && found.host !== lost.name && found.state === "ready" ? found : undefined;
    });
    expect(moved.id).toBe(client.id);
    expect(moved.host).toBe(web.host);
    expect(moved.address).toBe(client.address);
    const tap = sh(
      "ip",
      "-n",
      (HOSTS.find((h) => h.name === web.host) as (typeof HOSTS)[number]).netns,
      "link",
    );
    expect(tap).toContain(deviceName("tap", client.id));
  }, 180_000);
});
