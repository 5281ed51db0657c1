// Endpoints on real kernels: a WAN namespace, a datacenter host and a client beside it on the
// WAN, and "guests" that are namespaces plugged into a network's bridge through a veth, each
// answering with its name on port 80 (busybox nc). A second network with the same range has a
// guest and an endpoint on the same host: each endpoint must reach its own network only.
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LinuxHostNetwork } from "../../regional-manager/network/linux.ts";
import { renderNftRules } from "../../regional-manager/network/nft.ts";
import { LoopbackRelays } from "../../regional-manager/network/relays.ts";
import { endpointMark, observeRouting, planRouting } from "../../regional-manager/network/routing.ts";
import {
  deviceName,
  type EndpointSpec,
  guestMac,
  type HostNetworkSpec,
  type NetworkFirewall,
} from "../../regional-manager/network/spec.ts";
import { addNamespace, joinWan, makeWan, plugGuest, removeNamespaces, sh, tcpAnswer } from "./namespaces.ts";

const UNDERLAY = "192.0.2.1";
// The web endpoint's port is also relayed on this machine's loopback: one other tests do not use.
const WEB_PORT = 31_000 + Math.floor(Math.random() * 1000);

function spec(options: {
  web: readonly string[];
  other?: readonly string[];
  firewall?: NetworkFirewall;
  endpoints?: boolean;
}): HostNetworkSpec {
  const withEndpoints = options.endpoints ?? true;
  const endpoint = (hostPort: number, backends: readonly string[]): EndpointSpec[] =>
    withEndpoints ? [{ hostPort, protocol: "tcp", guestPort: 80, backends }] : [];
  return {
    underlayAddress: UNDERLAY,
    networks: [
      {
        id: "net_web",
        vni: 4200,
        mtu: 1450,
        ports: [
          { instanceId: "ins_w1", mac: guestMac("ins_w1"), address: "10.30.0.2" },
          { instanceId: "ins_w2", mac: guestMac("ins_w2"), address: "10.30.0.3" },
        ],
        gateway: { address: "10.30.0.1", prefixLength: 16 },
        endpoints: endpoint(WEB_PORT, options.web),
        ...(options.firewall ? { firewall: options.firewall } : {}),
      },
      {
        id: "net_other",
        vni: 4201,
        mtu: 1450,
        ports: [{ instanceId: "ins_o1", mac: guestMac("ins_o1"), address: "10.30.0.2" }],
        gateway: { address: "10.30.0.1", prefixLength: 16 },
        endpoints: endpoint(30002, options.other ?? ["10.30.0.2"]),
      },
    ],
  };
}

const allowOutside: NetworkFirewall = {
  rules: [{ action: "allow", protocol: "tcp", ports: ["80"], sources: ["0.0.0.0/0"] }],
  otherwiseAllow: ["10.30.0.0/16"],
};

describe("endpoint rules", () => {
  it("spreads over the ready guests, marks the network's traffic and source-NATs to its gateway", () => {
    const rules = renderNftRules(spec({ web: ["10.30.0.2", "10.30.0.3"] }));
    const mark = `0x${endpointMark(4200).toString(16)}`;
    expect(rules).toContain(
      `ip daddr ${UNDERLAY} tcp dport ${WEB_PORT} dnat ip to numgen inc mod 2 map { 0 : 10.30.0.2, 1 : 10.30.0.3 } : 80`,
    );
    expect(rules).toContain(
      `ip daddr ${UNDERLAY} tcp dport ${WEB_PORT} ct zone set 4200 meta mark set ${mark}`,
    );
    expect(rules).toContain(
      `oifname "${deviceName("bridge", "net_web")}" ct status dnat snat ip to 10.30.0.1`,
    );
    // Replies reach the bridge's input with their NAT undone already: let through by their mark.
    const other = `0x${endpointMark(4201).toString(16)}`;
    expect(rules).toContain(`iifname "gvt*" ether type ip meta mark { ${mark}, ${other} } accept`);
  });

  it("gives an endpoint with no ready guest no NAT, so the host refuses it", () => {
    expect(renderNftRules(spec({ web: [] }))).not.toContain(`tcp dport ${WEB_PORT} dnat`);
  });

  it("plans a gateway, a table and a rule per network, and nothing when they are there", () => {
    const wanted = spec({ web: ["10.30.0.2"] });
    const empty = observeRouting("[]", "[]", "[]");
    const steps = planRouting(empty, wanted).map((s) => `${s.program} ${s.args.join(" ")}`);
    const bridge = deviceName("bridge", "net_web");
    const table = endpointMark(4200);
    expect(steps).toContain(`ip addr add 10.30.0.1/32 dev ${bridge} noprefixroute`);
    expect(steps).toContain(`ip route replace 10.30.0.0/16 dev ${bridge} src 10.30.0.1 table ${table}`);
    expect(steps).toContain(`ip rule add fwmark 0x${table.toString(16)} lookup ${table} pref 20000`);
  });
});

/** What a TCP server at host:port sends before it closes. */
function readAll(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    const socket = createConnection({ host, port }, () => socket.end());
    socket.setEncoding("utf8");
    socket.on("data", (chunk) => (text += chunk));
    socket.on("error", reject);
    socket.on("close", () => resolve(text.trim()));
  });
}

const tag = randomBytes(3).toString("hex");
const ns = { wan: `gvw-${tag}`, host: `gvh-${tag}`, client: `gvc-${tag}` };
const guests = { w1: `gve1-${tag}`, w2: `gve2-${tag}`, o1: `gve3-${tag}` };
const created: string[] = [];
const servers: ChildProcess[] = [];

function plugWebGuest(name: string, network: string, ip: string): void {
  servers.push(
    ...plugGuest({ name, host: ns.host, bridge: deviceName("bridge", network), ip, ports: ["80"] }, created),
  );
}

/** The name the endpoint answered with, or "" when the connection was refused or timed out. */
function ask(from: string, port: number): string {
  return tcpAnswer(from, UNDERLAY, port);
}

function answers(from: string, port: number, tries: number): Set<string> {
  const seen = new Set<string>();
  for (let i = 0; i < tries; i++) seen.add(ask(from, port));
  return seen;
}

describe("endpoints on a real host", () => {
  const host = new LinuxHostNetwork({ netns: ns.host });

  beforeAll(async () => {
    for (const name of [ns.wan, ns.host, ns.client]) addNamespace(name, created);
    makeWan(ns.wan);
    joinWan(ns.host, ns.wan, UNDERLAY);
    joinWan(ns.client, ns.wan, "192.0.2.9");
    // Connections from other machines are forwarded to the guests (the host is their router).
    sh("ip", "netns", "exec", ns.host, "sysctl", "-qw", "net.ipv4.ip_forward=1");
    await host.reconcile(spec({ web: ["10.30.0.2", "10.30.0.3"], firewall: allowOutside }));
    plugWebGuest(guests.w1, "net_web", "10.30.0.2");
    plugWebGuest(guests.w2, "net_web", "10.30.0.3");
    plugWebGuest(guests.o1, "net_other", "10.30.0.2");
    for (let i = 0; i < 50 && ask(ns.host, 30002) === ""; i++) await new Promise((r) => setTimeout(r, 100));
  }, 60_000);

  afterAll(() => {
    for (const server of servers) server.kill("SIGKILL");
    removeNamespaces(created);
  });

  it("reaches every ready guest from the host and from another machine, each network its own", () => {
    expect(answers(ns.host, WEB_PORT, 6)).toEqual(new Set([guests.w1, guests.w2]));
    expect(answers(ns.client, WEB_PORT, 6)).toEqual(new Set([guests.w1, guests.w2]));
    // The same addresses on another network: its endpoint reaches its own guest only.
    expect(answers(ns.host, 30002, 3)).toEqual(new Set([guests.o1]));
    expect(answers(ns.client, 30002, 3)).toEqual(new Set([guests.o1]));
  }, 60_000);

  it("changes nothing when the host is already as wanted", async () => {
    expect(await host.reconcile(spec({ web: ["10.30.0.2", "10.30.0.3"], firewall: allowOutside }))).toEqual(
      [],
    );
  });

  it("stops sending to a guest as soon as it leaves the backends, and refuses with none", async () => {
    await host.reconcile(spec({ web: ["10.30.0.3"], firewall: allowOutside }));
    expect(answers(ns.host, WEB_PORT, 6)).toEqual(new Set([guests.w2]));
    await host.reconcile(spec({ web: [], firewall: allowOutside }));
    const started = performance.now();
    expect(ask(ns.host, WEB_PORT)).toBe("");
    // Refused at once (a reset), not left to time out.
    expect(performance.now() - started).toBeLessThan(1000);
  }, 60_000);

  it("obeys the network's firewall, the client being the outside", async () => {
    const denyOutside: NetworkFirewall = { rules: [], otherwiseAllow: ["10.30.0.0/16"] };
    await host.reconcile(spec({ web: ["10.30.0.2", "10.30.0.3"], firewall: denyOutside }));
    expect(ask(ns.host, WEB_PORT)).toBe("");
    expect(ask(ns.client, WEB_PORT)).toBe("");
    // Between the guests the default still allows.
    expect(sh("ip", "netns", "exec", guests.w1, "busybox", "nc", "-w", "1", "10.30.0.3", "80").trim()).toBe(
      guests.w2,
    );
    await host.reconcile(spec({ web: ["10.30.0.2", "10.30.0.3"], firewall: allowOutside }));
    expect(ask(ns.client, WEB_PORT)).not.toBe("");
  }, 60_000);

  it("probes whether a guest serves through the guest's own bridge", async () => {
    const web = deviceName("bridge", "net_web");
    const other = deviceName("bridge", "net_other");
    expect(await host.acceptsTcp(web, "10.30.0.3", 80)).toBe(true);
    expect(await host.acceptsTcp(web, "10.30.0.3", 81)).toBe(false);
    // 10.30.0.3 is on net_web only: not reached through net_other's bridge.
    expect(await host.acceptsTcp(other, "10.30.0.3", 80)).toBe(false);
    expect(await host.acceptsTcp(other, "10.30.0.2", 80)).toBe(true);
  }, 30_000);

  it("lets a guest reach neither the host nor its gateway on its own", () => {
    expect(tcpAnswer(guests.w1, "10.30.0.1", 22)).toBe("");
    expect(() =>
      sh("ip", "netns", "exec", guests.w1, "busybox", "ping", "-c", "1", "-W", "1", "10.30.0.1"),
    ).toThrow();
  });

  it("is reached from this machine's loopback through a relay into the host's namespace", async () => {
    const socketDir = mkdtempSync(join(tmpdir(), "gv-relay-"));
    const relays = new LoopbackRelays({
      netns: ns.host,
      underlayAddress: UNDERLAY,
      socketDir,
      log: () => {},
    });
    try {
      expect(await relays.sync([WEB_PORT])).toEqual([]);
      const seen = new Set<string>();
      for (let i = 0; i < 6; i++) seen.add(await readAll(LoopbackRelays.host, WEB_PORT));
      expect(seen).toEqual(new Set([guests.w1, guests.w2]));
      await relays.sync([]);
      await expect(readAll(LoopbackRelays.host, WEB_PORT)).rejects.toThrow(/ECONNREFUSED/);
    } finally {
      await relays.close();
      rmSync(socketDir, { recursive: true, force: true });
    }
  }, 30_000);

  it("removes the gateway, the table, the rule and the NAT with the endpoints", async () => {
    await host.reconcile(spec({ web: ["10.30.0.2"], endpoints: false }));
    const routing = observeRouting(
      sh("ip", "netns", "exec", ns.host, "ip", "-j", "-4", "addr", "show"),
      sh("ip", "netns", "exec", ns.host, "ip", "-j", "-4", "rule", "show"),
      sh("ip", "netns", "exec", ns.host, "ip", "-j", "-4", "route", "show", "table", "all"),
    );
    expect([...routing.bridgeAddresses.values()].flat()).toEqual([]);
    expect(routing.tables.size).toBe(0);
    expect(routing.rules).toEqual([]);
    expect(sh("ip", "netns", "exec", ns.host, "nft", "list", "ruleset")).not.toContain("dnat");
    expect(ask(ns.host, WEB_PORT)).toBe("");
    await host.clear();
  }, 30_000);
});
