import { describe, expect, it } from "vitest";
import { GuestNetworks, hostNetworkSpecOf } from "../../regional-manager/network/guests.ts";
import type { LinuxHostNetwork } from "../../regional-manager/network/linux.ts";
import { guestMac, type HostNetworkSpec } from "../../regional-manager/network/spec.ts";

const nic = (network: string, vni: number, address: string, mtu = 1450) => ({
  network,
  vni,
  address,
  prefixLength: 16,
  mtu,
});

describe("a host's networks, from the guests it runs", () => {
  it("has one network per network with a guest here, one port per guest, taps owned by QEMU's user", () => {
    const spec = hostNetworkSpecOf(
      [
        { instanceId: "ins_b", nic: nic("net_web", 4100, "10.1.0.3") },
        { instanceId: "ins_c", nic: nic("net_db", 4101, "10.1.0.2") },
        { instanceId: "ins_a", nic: nic("net_web", 4100, "10.1.0.2") },
      ],
      {
        underlayAddress: "192.0.2.1",
        tapOwnerUid: 65534,
        peersOf: (id) => (id === "net_web" ? ["192.0.2.2"] : []),
      },
    );
    expect(spec).toEqual({
      underlayAddress: "192.0.2.1",
      networks: [
        {
          id: "net_db",
          vni: 4101,
          mtu: 1450,
          peers: [],
          ports: [{ instanceId: "ins_c", mac: guestMac("ins_c"), address: "10.1.0.2", ownerUid: 65534 }],
        },
        {
          id: "net_web",
          vni: 4100,
          mtu: 1450,
          peers: ["192.0.2.2"],
          ports: [
            { instanceId: "ins_a", mac: guestMac("ins_a"), address: "10.1.0.2", ownerUid: 65534 },
            { instanceId: "ins_b", mac: guestMac("ins_b"), address: "10.1.0.3", ownerUid: 65534 },
          ],
        },
      ],
    });
  });

  it("has no network once no guest needs one: the executor then removes everything", () => {
    expect(hostNetworkSpecOf([], { underlayAddress: "192.0.2.1" })).toEqual({
      underlayAddress: "192.0.2.1",
      networks: [],
    });
  });

  it("does not know the other datacenters until the control plane names them, then follows it", async () => {
    const applied: HostNetworkSpec[] = [];
    const executor = { reconcile: async (spec: HostNetworkSpec) => applied.push(spec) };
    const networks = new GuestNetworks({
      host: { underlayAddress: "192.0.2.1" },
      executor: executor as unknown as LinuxHostNetwork,
    });
    const guests = [{ instanceId: "ins_a", nic: nic("net_web", 4100, "10.1.0.2") }];
    await networks.sync(guests);
    expect(applied[0]?.networks[0]).not.toHaveProperty("peers");
    // Its own address among the peers is dropped; the same peers again need no sync.
    expect(networks.setPeers(["192.0.2.2", "192.0.2.1"])).toBe(true);
    expect(networks.setPeers(["192.0.2.2"])).toBe(false);
    await networks.sync(guests);
    expect(applied[1]?.networks[0]?.peers).toEqual(["192.0.2.2"]);
    // An empty answer is an answer: no other datacenter.
    expect(networks.setPeers([])).toBe(true);
    await networks.sync(guests);
    expect(applied[2]?.networks[0]?.peers).toEqual([]);
  });
});
