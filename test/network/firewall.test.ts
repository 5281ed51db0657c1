// A network's firewall on real kernels: three namespaces stand for the WAN and two datacenter
// hosts, and "guests" are namespaces plugged into the network's bridge through a veth. Each
// guest serves TCP on ports 80 and 81 (busybox nc); what gets through is what the rules say,
// judged at the destination's host. Nothing outside these namespaces is touched.
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LinuxHostNetwork } from "../../regional-manager/network/linux.ts";
import { mergedPortRanges, outermostBlocks, renderNftRules } from "../../regional-manager/network/nft.ts";
import { conntrackZone } from "../../regional-manager/network/routing.ts";
import {
  deviceName,
  guestMac,
  type HostNetworkSpec,
  type NetworkFirewall,
} from "../../regional-manager/network/spec.ts";
import { addNamespace, joinWan, makeWan, plugGuest, removeNamespaces, sh, tcpAnswer } from "./namespaces.ts";

describe("firewall rules, rendered", () => {
  const network = (firewall?: NetworkFirewall): HostNetworkSpec => ({
    underlayAddress: "192.0.2.1",
    networks: [
      {
        id: "net_web",
        vni: 4096,
        mtu: 1450,
        ports: [{ instanceId: "ins_a", mac: guestMac("ins_a"), address: "10.20.0.2" }],
        ...(firewall ? { firewall } : {}),
      },
    ],
  });

  it("sends traffic toward this host's guests of a network through the network's rules, in order", () => {
    const rules = renderNftRules(
      network({
        rules: [
          { action: "deny", protocol: "tcp", ports: ["80"], sources: ["10.20.0.7/32"] },
          { action: "allow", protocol: "tcp", ports: ["80", "8000-8080"], sources: ["0.0.0.0/0"] },
          { action: "allow", protocol: "icmp", ports: [], sources: ["10.0.0.0/8"] },
          { action: "allow", protocol: "udp", ports: [], sources: [] },
        ],
        otherwiseAllow: ["10.20.0.0/16"],
      }),
    );
    const chain = `fw_${deviceName("bridge", "net_web")}`;
    expect(rules).toContain(
      `oifname "${deviceName("bridge", "net_web")}" ip daddr { 10.20.0.2 } jump ${chain}`,
    );
    expect(rules).toContain(
      `iifname "${deviceName("bridge", "net_web")}" ct zone set ${conntrackZone(4096)}`,
    );
    const body = rules
      .slice(rules.indexOf(`chain ${chain}`))
      .split("\n")
      .slice(1, 9)
      .map((l) => l.trim());
    expect(body).toEqual([
      "ct state established,related accept",
      "ct state invalid drop",
      "ip saddr { 10.20.0.7/32 } tcp dport { 80 } drop",
      "tcp dport { 80, 8000-8080 } accept",
      "ip saddr { 10.0.0.0/8 } ip protocol icmp accept",
      // The udp rule has no source (a group with no instance yet): it matches nothing.
      "ip saddr { 10.20.0.0/16 } accept",
      "drop",
      "}",
    ]);
  });

  it("on a datacenter's gateway, judges endpoint connections to guests on other hosts, and lets their replies in through the tunnel", () => {
    const firewall: NetworkFirewall = {
      rules: [{ action: "allow", protocol: "tcp", ports: ["80"], sources: ["203.0.113.0/24"] }],
      otherwiseAllow: [],
    };
    const rules = renderNftRules({
      underlayAddress: "192.0.2.1",
      networks: [
        {
          id: "net_web",
          vni: 4096,
          mtu: 1450,
          ports: [],
          firewall,
          gateway: { address: "10.20.0.1", prefixLength: 20 },
          endpoints: [{ hostPort: 30000, protocol: "tcp", guestPort: 80, backends: ["10.20.0.5"] }],
          remoteGuests: ["10.20.0.5", "10.20.0.6"],
        },
      ],
    });
    const bridge = deviceName("bridge", "net_web");
    const vxlan = deviceName("vxlan", "net_web");
    const chain = `fw_${bridge}`;
    expect(rules).toContain(`oifname "${bridge}" ip daddr { 10.20.0.5, 10.20.0.6 } jump ${chain}`);
    expect(rules).toContain(`ip daddr { 10.20.0.5, 10.20.0.6 } ct status dnat jump ${chain}`);
    expect(rules).toContain(
      `iifname { "gvt*", "${vxlan}" } ether type arp arp daddr ip { 10.20.0.1 } accept`,
    );
    expect(rules).toContain(`iifname { "gvt*", "${vxlan}" } ether type ip ip daddr { 10.20.0.1 } accept`);
    expect(rules).toContain("ip daddr 192.0.2.1 tcp dport 30000 dnat ip to 10.20.0.5:80");
    // Nothing else from a tunnel reaches the gateway.
    expect(rules).toContain('iifname { "gvt*", "gvx*" } drop');
  });

  it("on a host agent, lets in what the datacenter's gateway sends (judged there) before the network's rules", () => {
    const rules = renderNftRules({
      underlayAddress: "192.0.2.5",
      networks: [
        {
          ...network({ rules: [], otherwiseAllow: [] }).networks[0],
          endpointGateway: "10.20.0.1",
        } as HostNetworkSpec["networks"][number],
      ],
    });
    const chain = `fw_${deviceName("bridge", "net_web")}`;
    const body = rules
      .slice(rules.indexOf(`chain ${chain}`))
      .split("\n")
      .slice(1, 5)
      .map((l) => l.trim());
    expect(body).toEqual([
      "ct state established,related accept",
      "ct state invalid drop",
      "ip saddr 10.20.0.1 accept",
      "drop",
    ]);
    // An agent is no gateway: no address of its own on the network, no NAT.
    expect(rules).not.toContain("snat");
    expect(rules).not.toContain("10.20.0.1 }");
  });

  it("leaves a network the control plane gave no firewall unfiltered", () => {
    expect(renderNftRules(network())).not.toContain("jump fw_");
  });

  it("writes overlapping ports and sources as their union, which nft accepts", () => {
    expect(mergedPortRanges(["85", "80-90", "91-95", "22", "100"])).toEqual(["22", "80-95", "100"]);
    expect(
      outermostBlocks(["10.20.0.7/32", "10.20.0.0/16", "10.20.0.0/16", "192.168.1.0/24", "10.20.5.0/24"]),
    ).toEqual(["10.20.0.0/16", "192.168.1.0/24"]);
  });

  it("gives each network its own conntrack zone, the same on every host", () => {
    expect(conntrackZone(1)).toBe(1);
    expect(conntrackZone(4096)).toBe(4096);
    expect(conntrackZone(65_535)).toBe(65_535);
    expect(conntrackZone(65_536)).toBe(1);
    expect(conntrackZone(16_777_215)).toBeGreaterThanOrEqual(1);
  });
});

const tag = randomBytes(3).toString("hex");
const ns = { wan: `gvw-${tag}`, a: `gva-${tag}`, b: `gvb-${tag}` };
const guest = { a1: `gvf1-${tag}`, b1: `gvf2-${tag}`, b2: `gvf3-${tag}` };
const address = { a1: "10.20.0.2", b1: "10.20.1.2", b2: "10.20.1.3" };
const created: string[] = [];
const servers: ChildProcess[] = [];

function plugWebGuest(name: string, host: string, ip: string): void {
  servers.push(
    ...plugGuest({ name, host, bridge: deviceName("bridge", "net_web"), ip, ports: ["80", "81"] }, created),
  );
}

/** Whether `from` gets the answer of whoever listens at `to`:`port` within a second. */
function connects(from: string, to: string, port: number): boolean {
  return tcpAnswer(from, to, port).length > 0;
}

function hostSpec(
  underlay: string,
  peer: string,
  guests: Array<[string, string]>,
  firewall?: NetworkFirewall,
): HostNetworkSpec {
  return {
    underlayAddress: underlay,
    networks: [
      {
        id: "net_web",
        vni: 4100,
        mtu: 1450,
        peers: [peer],
        ports: guests.map(([id, ip]) => ({ instanceId: id, mac: guestMac(id), address: ip })),
        ...(firewall ? { firewall } : {}),
      },
    ],
  };
}

describe("firewall rules on real hosts", () => {
  const hostA = new LinuxHostNetwork({ netns: ns.a });
  const hostB = new LinuxHostNetwork({ netns: ns.b });
  const onA: Array<[string, string]> = [["ins_a1", address.a1]];
  const onB: Array<[string, string]> = [
    ["ins_b1", address.b1],
    ["ins_b2", address.b2],
  ];
  const rules = (denyA1: boolean): NetworkFirewall => ({
    rules: [
      ...(denyA1
        ? [
            {
              action: "deny" as const,
              protocol: "tcp" as const,
              ports: ["80"],
              sources: [`${address.a1}/32`],
            },
          ]
        : []),
      { action: "allow", protocol: "tcp", ports: ["80"], sources: ["10.20.0.0/16"] },
      { action: "allow", protocol: "icmp", ports: [], sources: ["0.0.0.0/0"] },
    ],
    otherwiseAllow: [],
  });

  beforeAll(async () => {
    for (const name of [ns.wan, ns.a, ns.b]) addNamespace(name, created);
    makeWan(ns.wan);
    joinWan(ns.a, ns.wan, "192.0.2.1");
    joinWan(ns.b, ns.wan, "192.0.2.2");
    await hostA.reconcile(hostSpec("192.0.2.1", "192.0.2.2", onA, rules(true)));
    await hostB.reconcile(hostSpec("192.0.2.2", "192.0.2.1", onB, rules(true)));
    plugWebGuest(guest.a1, ns.a, address.a1);
    plugWebGuest(guest.b1, ns.b, address.b1);
    plugWebGuest(guest.b2, ns.b, address.b2);
    // The servers are listening once a connection on the same host gets an answer.
    for (let i = 0; i < 50 && !connects(guest.b2, address.b1, 80); i++)
      await new Promise((r) => setTimeout(r, 100));
  }, 60_000);

  afterAll(() => {
    for (const server of servers) server.kill("SIGKILL");
    removeNamespaces(created);
  });

  it("lets through what a rule allows, stops what a rule denies, and drops what none allows", () => {
    expect(connects(guest.b2, address.b1, 80)).toBe(true);
    // From another datacenter: judged by the destination's host.
    expect(connects(guest.a1, address.b1, 80)).toBe(false);
    expect(connects(guest.b1, address.a1, 80)).toBe(true);
    // No rule allows port 81, and the network's default is to deny.
    expect(connects(guest.b2, address.b1, 81)).toBe(false);
    sh("ip", "netns", "exec", guest.a1, "busybox", "ping", "-c", "1", "-W", "2", address.b1);
  }, 30_000);

  it("takes a changed rule at once, without touching the guests' links", async () => {
    const started = performance.now();
    await hostB.reconcile(hostSpec("192.0.2.2", "192.0.2.1", onB, rules(false)));
    expect(connects(guest.a1, address.b1, 80)).toBe(true);
    expect(performance.now() - started).toBeLessThan(2000);
    await hostB.reconcile(hostSpec("192.0.2.2", "192.0.2.1", onB, rules(true)));
    expect(connects(guest.a1, address.b1, 80)).toBe(false);
  }, 30_000);

  it("allows traffic between a network's own addresses by default where the network says so", async () => {
    await hostB.reconcile(
      hostSpec("192.0.2.2", "192.0.2.1", onB, { rules: [], otherwiseAllow: ["10.20.0.0/16"] }),
    );
    expect(connects(guest.b2, address.b1, 81)).toBe(true);
    expect(connects(guest.a1, address.b1, 81)).toBe(true);
  }, 30_000);

  it("removes the firewall with the network", async () => {
    await hostA.clear();
    await hostB.clear();
    expect(sh("ip", "netns", "exec", ns.b, "nft", "list", "tables")).not.toContain("globalvm");
  });
});
