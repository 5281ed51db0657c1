import { describe, expect, it } from "vitest";
import { assignPorts, endpointKey } from "../../regional-manager/network/endpoints.ts";
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
        { instanceId: "ins_b", nic: nic("net_web", 4100, "10.1.0.3"), ready: true },
        { instanceId: "ins_c", nic: nic("net_db", 4101, "10.1.0.2"), ready: true },
        { instanceId: "ins_a", nic: nic("net_web", 4100, "10.1.0.2"), ready: true },
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
    const guests = [{ instanceId: "ins_a", nic: nic("net_web", 4100, "10.1.0.2"), ready: true }];
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

describe("endpoints, from the guests in a group's endpoints", () => {
  const exposing = (address: string, ready: boolean) => ({
    instanceId: `ins_${address}`,
    nic: {
      ...nic("net_web", 4100, address),
      endpoints: { group: "vmg_web", gateway: "10.1.0.1", ports: [80, 443] },
    },
    ready,
  });

  it("spreads each exposed port over the ready guests only, at the host port it was given", () => {
    const ports = new Map([
      [endpointKey("vmg_web", 80), 30001],
      [endpointKey("vmg_web", 443), 30000],
    ]);
    const spec = hostNetworkSpecOf(
      [exposing("10.1.0.3", true), exposing("10.1.0.2", true), exposing("10.1.0.4", false)],
      { underlayAddress: "192.0.2.1", endpointPortOf: (key) => ports.get(key) },
    );
    expect(spec.networks[0]?.gateway).toEqual({ address: "10.1.0.1", prefixLength: 16 });
    expect(spec.networks[0]?.endpoints).toEqual([
      { hostPort: 30000, protocol: "tcp", guestPort: 443, backends: ["10.1.0.2", "10.1.0.3"] },
      { hostPort: 30001, protocol: "tcp", guestPort: 80, backends: ["10.1.0.2", "10.1.0.3"] },
    ]);
  });

  it("on a datacenter's gateway, leads each port to guests on the other hosts through the tunnel, with no tap here", () => {
    const ports = new Map([
      [endpointKey("vmg_web", 80), 30001],
      [endpointKey("vmg_web", 443), 30000],
    ]);
    const elsewhere = (address: string, ready: boolean) => ({ ...exposing(address, ready), elsewhere: true });
    const spec = hostNetworkSpecOf(
      [elsewhere("10.1.0.3", true), elsewhere("10.1.0.2", true), elsewhere("10.1.0.4", false)],
      { underlayAddress: "192.0.2.1", endpointPortOf: (key) => ports.get(key) },
    );
    const [network] = spec.networks;
    expect(network?.ports).toEqual([]);
    expect(network?.gateway).toEqual({ address: "10.1.0.1", prefixLength: 16 });
    // Every guest it may send to is judged by the firewall here, ready or not yet.
    expect(network?.remoteGuests).toEqual(["10.1.0.2", "10.1.0.3", "10.1.0.4"]);
    expect(network?.endpoints?.map((e) => e.backends)).toEqual([
      ["10.1.0.2", "10.1.0.3"],
      ["10.1.0.2", "10.1.0.3"],
    ]);
  });

  it("on a host agent, offers no endpoint and only names the gateway its connections come from", () => {
    const agentGuest = {
      instanceId: "ins_a",
      nic: { ...nic("net_web", 4100, "10.1.0.2"), endpointGateway: "10.1.0.1" },
      ready: true,
    };
    const [network] = hostNetworkSpecOf([agentGuest], { underlayAddress: "192.0.2.5" }).networks;
    expect(network).toMatchObject({ endpointGateway: "10.1.0.1", ports: [{ address: "10.1.0.2" }] });
    expect(network).not.toHaveProperty("gateway");
    expect(network).not.toHaveProperty("endpoints");
    expect(network).not.toHaveProperty("remoteGuests");
  });

  it("keeps an endpoint's port, gives new ones the lowest free, and frees the ones not wanted", () => {
    const range = { from: 30000, to: 30002 };
    const held = new Map([
      ["vmg_a/tcp/80", 30001],
      ["vmg_gone/tcp/80", 30000],
    ]);
    const next = assignPorts(held, ["vmg_a/tcp/80", "vmg_b/tcp/80", "vmg_c/tcp/80"], range);
    expect(Object.fromEntries(next)).toEqual({
      "vmg_a/tcp/80": 30001,
      "vmg_b/tcp/80": 30000,
      "vmg_c/tcp/80": 30002,
    });
    // Used up: the endpoint left out gets none (it is not reported, and not served).
    expect(assignPorts(next, [...next.keys(), "vmg_d/tcp/80"], range).has("vmg_d/tcp/80")).toBe(false);
    // A port something else holds moves its endpoint.
    expect(assignPorts(next, ["vmg_a/tcp/80"], range, new Set([30001])).get("vmg_a/tcp/80")).toBe(30000);
  });
});
