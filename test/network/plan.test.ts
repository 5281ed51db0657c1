import { describe, expect, it } from "vitest";
import { renderNftRules } from "../../regional-manager/network/nft.ts";
import { observeHost, planHostNetwork } from "../../regional-manager/network/plan.ts";
import {
  deviceName,
  guestMac,
  type HostNetworkSpec,
  ownedKind,
} from "../../regional-manager/network/spec.ts";

const spec: HostNetworkSpec = {
  underlayAddress: "192.0.2.1",
  networks: [
    {
      id: "net_a",
      vni: 4242,
      mtu: 1450,
      peers: ["192.0.2.2", "192.0.2.3"],
      ports: [
        { instanceId: "ins_1", mac: guestMac("ins_1"), address: "10.20.0.2" },
        { instanceId: "ins_2", mac: guestMac("ins_2"), address: "10.20.0.3", ownerUid: 65534 },
      ],
    },
  ],
};

const bridge = deviceName("bridge", "net_a");
const vxlan = deviceName("vxlan", "net_a");
const tap1 = deviceName("tap", "ins_1");
const tap2 = deviceName("tap", "ins_2");

/** `ip -j -d link show` as the kernel prints it once the spec is in place. */
function linksInPlace(overrides: Record<string, object> = {}): string {
  const slave = { master: bridge, flags: ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"], mtu: 1450 };
  const links = [
    { ifname: "lo", flags: ["LOOPBACK", "UP"], mtu: 65536, linkinfo: undefined },
    { ifname: "eth0", flags: ["UP"], mtu: 1500, linkinfo: { info_kind: "veth" } },
    { ifname: bridge, flags: ["UP"], mtu: 1450, linkinfo: { info_kind: "bridge", info_data: {} } },
    {
      ifname: vxlan,
      ...slave,
      linkinfo: {
        info_kind: "vxlan",
        info_data: { id: 4242, local: "192.0.2.1", port: 4789, learning: false },
      },
    },
    { ifname: tap1, ...slave, linkinfo: { info_kind: "tun", info_data: { type: "tap", user: undefined } } },
    { ifname: tap2, ...slave, linkinfo: { info_kind: "tun", info_data: { type: "tap", user: "nobody" } } },
  ];
  return JSON.stringify(links.map((l) => ({ ...l, ...(overrides[l.ifname] ?? {}) })));
}

const floodsInPlace = JSON.stringify([
  { mac: "00:00:00:00:00:00", ifname: vxlan, dst: "192.0.2.2", flags: ["self"] },
  { mac: "00:00:00:00:00:00", ifname: vxlan, dst: "192.0.2.3", flags: ["self"] },
  { mac: "aa:bb:cc:dd:ee:ff", ifname: vxlan, master: bridge },
]);

const names = new Map([[65534, "nobody"]]);

describe("names and MACs", () => {
  it("fit Linux's 15-byte interface names, are stable, and are recognized as ours", () => {
    for (const kind of ["bridge", "vxlan", "tap"] as const) {
      const name = deviceName(kind, "net_01jabcdefghjkmnpqrstvwxyz0");
      expect(name.length).toBeLessThanOrEqual(15);
      expect(deviceName(kind, "net_01jabcdefghjkmnpqrstvwxyz0")).toBe(name);
      expect(ownedKind(name)).toBe(kind);
    }
    expect(deviceName("tap", "ins_1")).not.toBe(deviceName("tap", "ins_2"));
    expect(ownedKind("eth0")).toBeUndefined();
    expect(ownedKind("gvbshort")).toBeUndefined();
  });

  it("gives each instance its own locally administered unicast MAC", () => {
    const macs = new Set(Array.from({ length: 1000 }, (_, i) => guestMac(`ins_${i}`)));
    expect(macs.size).toBe(1000);
    for (const mac of macs) {
      const first = Number.parseInt(mac.slice(0, 2), 16);
      expect(first & 0x02).toBe(0x02);
      expect(first & 0x01).toBe(0);
    }
    expect(guestMac("ins_1")).toBe(guestMac("ins_1"));
  });
});

describe("planHostNetwork", () => {
  it("creates the bridge, the tunnel, the taps and one flood entry per peer on an empty host", () => {
    const steps = planHostNetwork(observeHost(JSON.stringify([{ ifname: "lo", flags: ["UP"] }]), "[]"), spec);
    const text = steps.map((s) => `${s.program} ${s.args.join(" ")}`);
    expect(text).toEqual([
      `ip link add ${bridge} type bridge`,
      `ip link set dev ${bridge} addrgenmode none`,
      `ip link add ${vxlan} type vxlan id 4242 local 192.0.2.1 dstport 4789 nolearning`,
      `ip link set dev ${vxlan} addrgenmode none`,
      `ip tuntap add dev ${tap1} mode tap`,
      `ip link set dev ${tap1} addrgenmode none`,
      `ip tuntap add dev ${tap2} mode tap user 65534`,
      `ip link set dev ${tap2} addrgenmode none`,
      `ip link set dev ${bridge} mtu 1450 up`,
      `ip link set dev ${vxlan} mtu 1450 master ${bridge} up`,
      `ip link set dev ${tap1} mtu 1450 master ${bridge} up`,
      `ip link set dev ${tap2} mtu 1450 master ${bridge} up`,
      `bridge fdb append 00:00:00:00:00:00 dev ${vxlan} dst 192.0.2.2`,
      `bridge fdb append 00:00:00:00:00:00 dev ${vxlan} dst 192.0.2.3`,
    ]);
  });

  it("does nothing when the host already matches (a restarted manager adopts what it finds)", () => {
    expect(planHostNetwork(observeHost(linksInPlace(), floodsInPlace), spec, names)).toEqual([]);
  });

  it("removes only devices it owns that nothing wants, ports before their bridge", () => {
    const { networks } = spec;
    const withoutInstance2 = {
      ...spec,
      networks: [{ ...networks[0], ports: networks[0]?.ports.slice(0, 1) }],
    };
    const steps = planHostNetwork(
      observeHost(linksInPlace(), floodsInPlace),
      withoutInstance2 as HostNetworkSpec,
      names,
    );
    expect(steps).toEqual([{ program: "ip", args: ["link", "del", "dev", tap2] }]);

    const none = planHostNetwork(observeHost(linksInPlace(), floodsInPlace), { ...spec, networks: [] });
    expect(none.map((s) => s.args.join(" "))).toEqual([
      `link del dev ${tap1}`,
      `link del dev ${tap2}`,
      `link del dev ${vxlan}`,
      `link del dev ${bridge}`,
    ]);
  });

  it("repairs what drifted: a port out of its bridge, a device down, a wrong MTU, a peer gone", () => {
    const links = linksInPlace({
      [tap1]: { master: undefined },
      [bridge]: { flags: [], mtu: 1500 },
    });
    const floods = JSON.stringify([
      { mac: "00:00:00:00:00:00", ifname: vxlan, dst: "192.0.2.2" },
      { mac: "00:00:00:00:00:00", ifname: vxlan, dst: "192.0.2.9" },
    ]);
    const steps = planHostNetwork(observeHost(links, floods), spec, names).map((s) => s.args.join(" "));
    expect(steps).toEqual([
      `link set dev ${bridge} mtu 1450`,
      `link set dev ${bridge} up`,
      `link set dev ${tap1} master ${bridge}`,
      `fdb append 00:00:00:00:00:00 dev ${vxlan} dst 192.0.2.3`,
      `fdb del 00:00:00:00:00:00 dev ${vxlan} dst 192.0.2.9`,
    ]);
  });

  it("leaves a tunnel's peers as they are while they are not known (a manager just restarted)", () => {
    const unknown = { ...spec, networks: spec.networks.map(({ peers: _, ...n }) => n) };
    const onePeer = JSON.stringify([{ mac: "00:00:00:00:00:00", ifname: vxlan, dst: "192.0.2.9" }]);
    expect(planHostNetwork(observeHost(linksInPlace(), onePeer), unknown, names)).toEqual([]);
    // Known again, they are brought to what the control plane says.
    const steps = planHostNetwork(observeHost(linksInPlace(), onePeer), spec, names).map((s) =>
      s.args.join(" "),
    );
    expect(steps).toContain(`fdb del 00:00:00:00:00:00 dev ${vxlan} dst 192.0.2.9`);
  });

  it("recreates a tunnel whose identity changed and a device of the wrong kind", () => {
    const links = linksInPlace({
      [vxlan]: {
        linkinfo: {
          info_kind: "vxlan",
          info_data: { id: 7, local: "192.0.2.1", port: 4789, learning: false },
        },
      },
      [tap1]: { linkinfo: { info_kind: "veth" } },
    });
    const steps = planHostNetwork(observeHost(links, floodsInPlace), spec, names).map((s) =>
      s.args.join(" "),
    );
    expect(steps.slice(0, 2)).toEqual([`link del dev ${vxlan}`, `link del dev ${tap1}`]);
    expect(steps).toContain(`link add ${vxlan} type vxlan id 4242 local 192.0.2.1 dstport 4789 nolearning`);
    expect(steps).toContain(`tuntap add dev ${tap1} mode tap`);
    // A recreated tunnel has no flood entries yet: all are added again.
    expect(steps.filter((s) => s.startsWith("fdb append"))).toHaveLength(2);
  });
});

describe("renderNftRules", () => {
  it("lets each port send only from its own MAC and address, and nothing reach the host", () => {
    const rules = renderNftRules(spec);
    expect(rules).toContain(`"${tap1}" . ${guestMac("ins_1")} . 10.20.0.2`);
    expect(rules).toContain(`"${tap2}" . ${guestMac("ins_2")} . 10.20.0.3`);
    expect(rules).toMatch(
      /iifname "gvt\*" ether type ip iifname \. ether saddr \. ip saddr != @port_sources drop/,
    );
    expect(rules).toMatch(/chain input \{[^}]*iifname "gvb\*" drop/);
    // Declare-delete-define: one transaction, whatever was there before.
    expect(rules.startsWith("table bridge globalvm\ndelete table bridge globalvm\n")).toBe(true);
  });

  it("removes the tables when no network is left", () => {
    expect(renderNftRules({ underlayAddress: "192.0.2.1", networks: [] })).toBe(
      "table bridge globalvm\ndelete table bridge globalvm\ntable inet globalvm\ndelete table inet globalvm\n",
    );
  });
});
