// The executor against the real kernel: three network namespaces stand for the WAN and two
// datacenter hosts; "guests" are namespaces plugged into a network's bridge through a veth (the
// data path between bridges, tunnels and peers is the same as for a QEMU tap). Nothing outside
// the namespaces this file creates is touched, and they are removed at the end.
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LinuxHostNetwork } from "../../regional-manager/network/linux.ts";
import { deviceName, guestMac, type HostNetworkSpec } from "../../regional-manager/network/spec.ts";
import { addNamespace, joinWan, makeWan, removeNamespaces, sh } from "./namespaces.ts";

const tag = randomBytes(3).toString("hex");
const ns = { wan: `gvw-${tag}`, a: `gva-${tag}`, b: `gvb-${tag}` };
const guests = { a1: `gvg1-${tag}`, b1: `gvg2-${tag}`, b2: `gvg3-${tag}` };
const created: string[] = [];

/** A "guest": a namespace whose eth0 is a veth whose other end sits in `bridge` on `host`. */
function plugGuest(guest: string, host: string, bridge: string, address: string): void {
  addNamespace(guest, created);
  const port = `p${guest.slice(3)}`.slice(0, 15);
  sh("ip", "link", "add", "eth0", "netns", guest, "type", "veth", "peer", "name", port, "netns", host);
  sh("ip", "-n", guest, "link", "set", "eth0", "mtu", "1450");
  sh("ip", "-n", guest, "addr", "add", `${address}/16`, "dev", "eth0");
  sh("ip", "-n", guest, "link", "set", "eth0", "up");
  sh("ip", "-n", host, "link", "set", port, "master", bridge, "mtu", "1450", "up");
}

function pings(from: string, to: string): boolean {
  try {
    sh("ip", "netns", "exec", from, "busybox", "ping", "-c", "1", "-W", "2", to);
    return true;
  } catch {
    return false;
  }
}

function ownedDevices(host: string): string[] {
  const links = JSON.parse(sh("ip", "-n", host, "-j", "link", "show")) as Array<{ ifname: string }>;
  return links.map((l) => l.ifname).filter((n) => /^gv[bxt]/.test(n) && n.length === 15);
}

function nftTables(host: string): string {
  return sh("ip", "netns", "exec", host, "nft", "list", "tables");
}

const spec = (
  underlay: string,
  peer: string,
  networks: Array<{ id: string; vni: number; ports: string[] }>,
) =>
  ({
    underlayAddress: underlay,
    networks: networks.map((n) => ({
      id: n.id,
      vni: n.vni,
      mtu: 1450,
      peers: [peer],
      ports: n.ports.map((id, i) => ({ instanceId: id, mac: guestMac(id), address: `10.20.${i}.9` })),
    })),
  }) satisfies HostNetworkSpec;

describe("LinuxHostNetwork in network namespaces", () => {
  const hostA = new LinuxHostNetwork({ netns: ns.a });
  const hostB = new LinuxHostNetwork({ netns: ns.b });
  const specA = spec("192.0.2.1", "192.0.2.2", [{ id: "net_web", vni: 100, ports: ["ins_a"] }]);
  const specB = spec("192.0.2.2", "192.0.2.1", [
    { id: "net_web", vni: 100, ports: ["ins_b"] },
    { id: "net_other", vni: 200, ports: ["ins_c"] },
  ]);

  beforeAll(() => {
    for (const name of [ns.wan, ns.a, ns.b]) addNamespace(name, created);
    makeWan(ns.wan);
    joinWan(ns.a, ns.wan, "192.0.2.1");
    joinWan(ns.b, ns.wan, "192.0.2.2");
  });

  afterAll(() => removeNamespaces(created));

  it("builds each host's bridges, tunnels and taps, and a second reconcile changes nothing", async () => {
    expect((await hostA.reconcile(specA)).length).toBeGreaterThan(0);
    expect((await hostB.reconcile(specB)).length).toBeGreaterThan(0);
    expect(ownedDevices(ns.a).sort()).toEqual(
      [deviceName("bridge", "net_web"), deviceName("vxlan", "net_web"), deviceName("tap", "ins_a")].sort(),
    );
    expect(ownedDevices(ns.b)).toHaveLength(6);
    expect(nftTables(ns.a)).toContain("table bridge globalvm");
    expect(await hostA.reconcile(specA)).toEqual([]);
    // A manager that starts again (a new executor, no memory) adopts what is there.
    expect(await new LinuxHostNetwork({ netns: ns.b }).reconcile(specB)).toEqual([]);
  });

  it("carries a network across hosts over the tunnel, and keeps other networks apart", async () => {
    plugGuest(guests.a1, ns.a, deviceName("bridge", "net_web"), "10.20.0.2");
    plugGuest(guests.b1, ns.b, deviceName("bridge", "net_web"), "10.20.1.2");
    // Same addresses as net_web's guests: only the bridges keep them apart.
    plugGuest(guests.b2, ns.b, deviceName("bridge", "net_other"), "10.20.0.3");
    expect(pings(guests.a1, "10.20.1.2")).toBe(true);
    expect(pings(guests.b1, "10.20.0.2")).toBe(true);
    expect(pings(guests.b2, "10.20.0.2")).toBe(false);
    expect(pings(guests.a1, "10.20.0.3")).toBe(false);
    // The hosts own no address on guest networks: a guest reaches neither of them.
    expect(pings(guests.a1, "192.0.2.1")).toBe(false);
    expect(pings(guests.a1, "192.0.2.2")).toBe(false);
  }, 60_000);

  it("keeps traffic flowing while no manager runs: the kernel carries it", () => {
    // Nothing of this process is on the path: the executor only ran commands.
    expect(pings(guests.a1, "10.20.1.2")).toBe(true);
  });

  it("removes what a deleted network or instance leaves, and everything on clear", async () => {
    const withoutOther = spec("192.0.2.2", "192.0.2.1", [{ id: "net_web", vni: 100, ports: [] }]);
    const steps = await hostB.reconcile(withoutOther);
    expect(steps.map((s) => s.args.slice(0, 2).join(" "))).toEqual([
      "link del",
      "link del",
      "link del",
      "link del",
    ]);
    expect(ownedDevices(ns.b).sort()).toEqual(
      [deviceName("bridge", "net_web"), deviceName("vxlan", "net_web")].sort(),
    );
    await hostA.clear();
    await hostB.clear();
    expect(ownedDevices(ns.a)).toEqual([]);
    expect(ownedDevices(ns.b)).toEqual([]);
    expect(nftTables(ns.a)).not.toContain("globalvm");
    expect(nftTables(ns.b)).not.toContain("globalvm");
  });
});
