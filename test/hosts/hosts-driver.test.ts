// The manager's side of hosts without any agent process: the registry's assignments and syncs,
// the driver that places instances on hosts and turns their syncs into driver events, and the
// HTTP API agents register and sync through.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { InstanceSpec, InstanceStateChange } from "../../regional-manager/compute/types.ts";
import { createHostApp } from "../../regional-manager/hosts/app.ts";
import { CredentialChecks } from "../../regional-manager/hosts/credential-checks.ts";
import { HostAgentNetworks } from "../../regional-manager/hosts/host-networks.ts";
import { HostsDriver } from "../../regional-manager/hosts/hosts-driver.ts";
import { type HostRecord, HostRegistry } from "../../regional-manager/hosts/registry.ts";
import { HostSessions } from "../../regional-manager/hosts/sessions.ts";
import { EndpointPorts } from "../../regional-manager/network/endpoints.ts";
import { NetworkFirewalls } from "../../regional-manager/network/firewalls.ts";
import { GuestNetworks } from "../../regional-manager/network/guests.ts";
import type { LinuxHostNetwork } from "../../regional-manager/network/linux.ts";
import type { HostNetworkSpec } from "../../regional-manager/network/spec.ts";
import type { HostInstanceStatus, HostRegistration, HostSync } from "../../schemas/hosts.ts";

let dir: string;
let now: number;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "globalvm-hosts-driver-"));
  now = 1_000_000;
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const registration: HostRegistration = {
  capacity: { vcpus: 2, memory_mb: 2048, disk_bytes: 10 * 2 ** 30 },
  arch: "x86_64",
  formats: ["raw", "qcow2"],
  cache_limit_bytes: 2 ** 30,
};
const IMAGE = {
  image_id: "img_01jd3k9x4m6q8r2t5v7w9y1z3b",
  version: 1,
  format: "qcow2" as const,
  digest: "sha256:00",
  size: 1 << 20,
};

function registry() {
  return new HostRegistry({ file: join(dir, "hosts.json"), downAfterMs: 30_000, now: () => now });
}
function sync(instances: HostInstanceStatus[] = []): HostSync {
  return { free: registration.capacity, cached: [], cache_bytes: 0, instances };
}
function spec(id: string, overrides: Partial<InstanceSpec> = {}): InstanceSpec {
  return {
    instanceId: id,
    name: id,
    vmGroup: "web",
    vmGroupId: "vmg_01jd3k9x4m6q8r2t5v7w9y1z3b",
    region: "us-east",
    datacenter: "us-east-a",
    image: { path: "/store/images/a.img", format: "qcow2", id: IMAGE.image_id },
    vcpus: 1,
    memoryMb: 256,
    metadata: {},
    ...overrides,
  };
}
function status(id: string, state: HostInstanceStatus["state"]): HostInstanceStatus {
  return { instance_id: id, state, reason: null, guest_attributes: {}, pid: 42, console_tail: "" };
}
function driverOn(hosts: HostRegistry) {
  return new HostsDriver({
    registry: hosts,
    imageOf: () => IMAGE,
    pathOf: () => "/store/images/a.img",
    confirmTimeoutMs: 1000,
    healIntervalMs: 0,
  });
}

describe("placing instances on hosts", () => {
  it("places on an up host, spreads a group with spread_hosts, and refuses with every host's reason", async () => {
    const hosts = registry();
    for (const name of ["h1", "h2"]) {
      hosts.register(name, registration);
      hosts.sync(name, sync());
    }
    const driver = driverOn(hosts);
    await driver.create(spec("ins_1", { spreadHosts: true }));
    await driver.create(spec("ins_2", { spreadHosts: true }));
    const placed = [hosts.hostOf("ins_1")?.name, hosts.hostOf("ins_2")?.name];
    expect(new Set(placed)).toEqual(new Set(["h1", "h2"]));
    await expect(driver.create(spec("ins_3", { spreadHosts: true }))).rejects.toThrow(
      /h1: .*anti-affinity.*; h2: .*anti-affinity/,
    );
    expect(driver.status("ins_1")).toMatchObject({ state: "stopped", host: placed[0] });
  });

  it("turns a host's syncs into state and guest-attribute events, and a silent host into failed", async () => {
    const hosts = registry();
    hosts.register("h1", registration);
    hosts.sync("h1", sync());
    const driver = driverOn(hosts);
    const changes: InstanceStateChange[] = [];
    const attributes: string[] = [];
    driver.on("state", (change) => changes.push(change));
    driver.on("guest-attribute", (write) => attributes.push(`${write.path}=${write.value}`));
    await driver.create(spec("ins_1"));
    await driver.start("ins_1");
    expect(hosts.get("h1")?.assignments.get("ins_1")?.desired).toBe("running");
    expect(driver.status("ins_1").state).toBe("starting");

    hosts.sync("h1", sync([status("ins_1", "fetching-image")]));
    hosts.sync("h1", sync([{ ...status("ins_1", "ready"), guest_attributes: { "globalvm/ready": "1" } }]));
    expect(changes.map((c) => c.state)).toEqual(["starting", "ready"]);
    expect(attributes).toEqual(["globalvm/ready=1"]);
    expect(driver.status("ins_1")).toMatchObject({ state: "ready", host: "h1", pid: 42 });

    now += 31_000;
    expect(driver.status("ins_1")).toMatchObject({ state: "failed", reason: "host h1 stopped syncing" });
  });

  it("keeps assignments across a manager restart", async () => {
    const hosts = registry();
    hosts.register("h1", registration);
    hosts.sync("h1", sync());
    await driverOn(hosts).create(spec("ins_1"));
    const again = registry();
    const adopted = await driverOn(again).reattach();
    expect(adopted.map((s) => [s.instanceId, s.host])).toEqual([["ins_1", "h1"]]);
    expect(again.isUp(again.get("h1") as never)).toBe(false);
  });

  it("after a restart, says a host's guests are starting until it syncs, and failed once its down time passes", async () => {
    const hosts = registry();
    hosts.register("h1", registration);
    hosts.sync("h1", sync());
    const before = driverOn(hosts);
    await before.create(spec("ins_1"));
    await before.start("ins_1");
    hosts.sync("h1", sync([status("ins_1", "ready")]));
    expect(before.status("ins_1")).toMatchObject({ state: "ready" });

    // The manager restarts: nothing synced yet, so nothing is known to have failed.
    now += 1_000;
    const again = registry();
    const after = driverOn(again);
    await after.reattach();
    expect(after.status("ins_1")).toMatchObject({
      state: "starting",
      reason: "waiting for host h1 to sync since this manager started",
    });
    expect(after.heal(now)).toEqual([]);
    // The host syncs: what it runs is what is reported.
    again.sync("h1", sync([status("ins_1", "ready")]));
    expect(after.status("ins_1")).toMatchObject({ state: "ready" });

    // Another restart, and this time the host never comes back within the down time.
    now += 1_000;
    const third = registry();
    const lonely = driverOn(third);
    await lonely.reattach();
    now += 31_000;
    expect(lonely.status("ins_1")).toMatchObject({
      state: "failed",
      reason: "host h1 has not synced since this manager started",
    });
    // Not moved: a host never seen since the restart may hold the guest still.
    expect(lonely.heal(now)).toEqual([]);
    expect(third.hostOf("ins_1")?.name).toBe("h1");
  });

  it("deletes once the host no longer reports the guest", async () => {
    const hosts = registry();
    hosts.register("h1", registration);
    hosts.sync("h1", sync());
    const driver = driverOn(hosts);
    await driver.create(spec("ins_1"));
    hosts.sync("h1", sync([status("ins_1", "ready")]));
    const deleting = driver.delete("ins_1");
    setTimeout(() => hosts.sync("h1", sync([])), 150);
    await deleting;
    expect(() => driver.status("ins_1")).toThrow(/no instance/);
    expect(hosts.get("h1")?.assignments.size).toBe(0);
  });
});

describe("the registry and credential checks", () => {
  it("offers what the up hosts have together", () => {
    const hosts = registry();
    hosts.register("h1", registration);
    hosts.register("h2", registration);
    expect(hosts.upCapacity()).toEqual({ vcpus: 0, memory_mb: 0, disk_bytes: 0 });
    hosts.sync("h1", sync());
    expect(hosts.upCapacity()).toEqual(registration.capacity);
    hosts.sync("h2", sync());
    expect(hosts.upCapacity().vcpus).toBe(4);
    now += 31_000;
    expect(hosts.upCapacity().vcpus).toBe(0);
  });

  it("asks the control plane about a credential once a minute at most", async () => {
    const asked: string[] = [];
    const checks = new CredentialChecks(async (credential) => {
      asked.push(credential);
      return credential === "good";
    });
    expect(await checks.check("good")).toBe(true);
    expect(await checks.check("good")).toBe(true);
    expect(await checks.check("bad")).toBe(false);
    expect(await checks.check("bad")).toBe(false);
    expect(asked).toEqual(["good", "bad"]);
  });
});

describe("healing", () => {
  it("moves an instance off a host that stopped syncing, and recreates a guest that stopped by itself", async () => {
    const hosts = registry();
    for (const name of ["h1", "h2"]) {
      hosts.register(name, registration);
      hosts.sync(name, sync());
    }
    const driver = driverOn(hosts);
    const reasons: string[] = [];
    // A repair says so: the instance manager reports it, the control plane records it.
    driver.on("state", (change) =>
      reasons.push(`${change.state}${change.repair ? " (repair)" : ""}: ${change.reason ?? ""}`),
    );
    await driver.create(spec("ins_1"));
    await driver.start("ins_1");
    const first = hosts.hostOf("ins_1")?.name as string;
    const other = first === "h1" ? "h2" : "h1";
    hosts.sync(first, sync([status("ins_1", "ready")]));
    expect(driver.heal(now)).toEqual([]);

    // The guest stops by itself: recreated where it is, as a new generation.
    hosts.sync(first, sync([{ ...status("ins_1", "stopped"), pid: null }]));
    expect(driver.heal(now)).toEqual(["ins_1"]);
    expect(hosts.get(first)?.assignments.get("ins_1")?.generation).toBe(1);
    expect(reasons.at(-1)).toBe(`starting (repair): recreated on host ${first}: its guest stopped by itself`);
    // Not again until that generation has run (and not within the backoff).
    expect(driver.heal(now + 60_000)).toEqual([]);

    // Its host goes silent: the instance moves to the other host, keeping its ID and spec.
    hosts.sync(first, sync([status("ins_1", "ready")]));
    hosts.sync(other, sync());
    now += 20_000;
    hosts.sync(other, sync());
    now += 15_000;
    expect(driver.heal(now)).toEqual(["ins_1"]);
    expect(hosts.hostOf("ins_1")?.name).toBe(other);
    expect(hosts.get(other)?.assignments.get("ins_1")).toMatchObject({ name: "ins_1", generation: 2 });
    expect(reasons.at(-1)).toBe(
      `starting (repair): recreated on host ${other}: host ${first} stopped syncing`,
    );
    expect(driver.status("ins_1")).toMatchObject({ host: other, state: "starting" });
  });
});

describe("guest networks on hosts", () => {
  const NETWORK = "net_01jd3k9x4m6q8r2t5v7w9y1z3b";
  const nic = (address: string) => ({
    networkInterface: { network: NETWORK, vni: 4097, address, prefixLength: 20, mtu: 1450 },
  });
  const firewall = { revision: 3, rules: [], otherwise_allow: ["10.128.0.0/9"] };

  it("gives an instance its NIC on a host that attaches guests, and keeps it there when it moves", async () => {
    const hosts = registry();
    hosts.register("h1", registration);
    hosts.register("h2", { ...registration, underlay_address: "198.51.100.2" });
    hosts.register("h3", { ...registration, underlay_address: "198.51.100.3" });
    for (const name of ["h1", "h2", "h3"]) hosts.sync(name, sync());
    const driver = driverOn(hosts);
    await driver.create(spec("ins_1", nic("10.128.0.5")));
    // h1 is first by name, but its guest would have no network.
    expect(hosts.hostOf("ins_1")?.name).toBe("h2");
    expect(hosts.get("h2")?.assignments.get("ins_1")?.network_interface).toEqual({
      network: NETWORK,
      vni: 4097,
      address: "10.128.0.5",
      prefix_length: 20,
    });
    expect(driver.status("ins_1").spec.networkInterface?.address).toBe("10.128.0.5");
    await driver.start("ins_1");
    hosts.sync("h2", sync([status("ins_1", "ready")]));

    // h2 goes silent: only h3 attaches guests, so the instance keeps its address there.
    now += 35_000;
    for (const name of ["h1", "h3"]) hosts.sync(name, sync());
    expect(driver.heal(now)).toEqual(["ins_1"]);
    expect(hosts.hostOf("ins_1")?.name).toBe("h3");
    expect(hosts.get("h3")?.assignments.get("ins_1")?.network_interface?.address).toBe("10.128.0.5");
    // With no such host left, it is not moved to one that would take its address away.
    now += 35_000;
    hosts.sync("h1", sync());
    const decision = driver.explain({
      instanceId: "ins_1",
      vmGroupId: undefined,
      spreadHosts: false,
      vcpus: 1,
      memoryMb: 256,
      network: "required",
      image: { imageId: IMAGE.image_id, version: 1, format: "qcow2", size: IMAGE.size },
    });
    expect(decision.refusal).toMatch(/h1: attaches no guests to networks/);
  });

  it("runs an instance isolated on a datacenter whose hosts attach no guests", async () => {
    const hosts = registry();
    hosts.register("h1", registration);
    hosts.sync("h1", sync());
    const driver = driverOn(hosts);
    await driver.create(spec("ins_1", nic("10.128.0.5")));
    expect(hosts.get("h1")?.assignments.get("ins_1")?.network_interface).toBeUndefined();
    expect(driver.status("ins_1").spec.networkInterface).toBeUndefined();
  });

  it("tells each host the other hosts' tunnels and its networks' firewalls, and wakes them only on a change", async () => {
    const hosts = registry();
    hosts.register("h1", { ...registration, underlay_address: "198.51.100.1" });
    hosts.register("h2", { ...registration, underlay_address: "198.51.100.2" });
    hosts.register("h3", registration);
    for (const name of ["h1", "h2", "h3"]) hosts.sync(name, sync());
    const firewalls = new NetworkFirewalls(join(dir, "firewalls.json"));
    const networks = new HostAgentNetworks({ registry: hosts, firewalls });
    const driver = driverOn(hosts);
    await driver.create(spec("ins_1", nic("10.128.0.5")));
    await firewalls.offer(NETWORK, firewall);
    const h1 = hosts.get("h1") as HostRecord;
    const placed = hosts.hostOf("ins_1") as HostRecord;
    expect(placed.name).toBe("h1");

    // Until the control plane has named the peers, a host is told none and keeps its own.
    expect(networks.answerFor(h1)).toEqual({ firewalls: { [NETWORK]: firewall } });
    // Other datacenters' hosts come from the control plane; this datacenter's at once.
    expect(networks.setPeers(["192.0.2.9", "198.51.100.1"])).toBe(true);
    expect(networks.setPeers(["198.51.100.1", "192.0.2.9"])).toBe(false);
    expect(networks.answerFor(h1)).toEqual({
      peers: ["192.0.2.9", "198.51.100.2"],
      firewalls: { [NETWORK]: firewall },
    });
    expect(networks.answerFor(hosts.get("h2") as HostRecord)).toEqual({
      peers: ["192.0.2.9", "198.51.100.1"],
      firewalls: {},
    });
    expect(networks.answerFor(hosts.get("h3") as HostRecord)).toBeUndefined();

    const guests = driver.list().map((s) => ({
      instanceId: s.instanceId,
      nic: s.spec.networkInterface as NonNullable<InstanceSpec["networkInterface"]>,
      ready: false,
    }));
    const revision = h1.revision;
    await networks.sync(guests);
    expect(h1.revision).toBe(revision + 1);
    await networks.sync(guests);
    expect(h1.revision).toBe(revision + 1);
    await firewalls.offer(NETWORK, { ...firewall, revision: 4, otherwise_allow: [] });
    await networks.sync(guests);
    expect(h1.revision).toBe(revision + 2);
    // A host that registers with (or moves) its underlay is news to the others.
    hosts.register("h3", { ...registration, underlay_address: "198.51.100.3" });
    expect(h1.revision).toBe(revision + 3);
    expect(networks.answerFor(h1)?.peers).toContain("198.51.100.3");
  });
});

describe("the datacenter's gateway (a manager of host agents with a guest network)", () => {
  const NETWORK = "net_01jd3k9x4m6q8r2t5v7w9y1z3b";
  const GROUP = "vmg_01jd3k9x4m6q8r2t5v7w9y1z3b";
  const exposing = (address: string) => ({
    networkInterface: {
      network: NETWORK,
      vni: 4097,
      address,
      prefixLength: 20,
      mtu: 1450,
      endpoints: { group: GROUP, gateway: "10.128.0.1", ports: [80] },
    },
  });

  it("offers a group's port at its own address, leading through tunnels to the guests on the agents", async () => {
    const hosts = registry();
    hosts.register("h1", { ...registration, underlay_address: "198.51.100.1" });
    hosts.register("h2", { ...registration, underlay_address: "198.51.100.2" });
    for (const name of ["h1", "h2"]) hosts.sync(name, sync());
    const applied: HostNetworkSpec[] = [];
    const gateway = new GuestNetworks({
      host: { underlayAddress: "192.0.2.100" },
      executor: {
        reconcile: async (spec: HostNetworkSpec) => void applied.push(spec),
        acceptsTcp: async () => true,
      } as unknown as LinuxHostNetwork,
      firewalls: new NetworkFirewalls(join(dir, "gateway-firewalls.json")),
      endpointPorts: new EndpointPorts(join(dir, "endpoint-ports.json")),
    });
    const networks = new HostAgentNetworks({
      registry: hosts,
      firewalls: new NetworkFirewalls(join(dir, "firewalls.json")),
      gateway,
    });
    expect(networks.offersEndpoints).toBe(true);
    expect(networks.firewalls).toBe(gateway.firewalls);

    const driver = driverOn(hosts);
    await driver.create(spec("ins_1", { spreadHosts: true, ...exposing("10.128.0.5") }));
    await driver.create(spec("ins_2", { spreadHosts: true, ...exposing("10.128.0.6") }));
    // An agent learns the gateway its guests' endpoint connections come from, and the gateway's tunnel.
    const h1 = hosts.get("h1") as HostRecord;
    const assigned = [...h1.assignments.values()][0];
    expect(assigned?.network_interface?.endpoints).toEqual({ gateway: "10.128.0.1", ports: [80] });
    networks.setPeers(["192.0.2.9"]);
    expect(networks.answerFor(h1)?.peers).toEqual(["192.0.2.100", "192.0.2.9", "198.51.100.2"]);

    let served = 0;
    networks.onServing = () => served++;
    const guests = (ready: boolean) =>
      driver.list().map((s) => ({
        instanceId: s.instanceId,
        nic: s.spec.networkInterface as NonNullable<InstanceSpec["networkInterface"]>,
        ready,
      }));
    // Booting: not yet backends.
    await networks.sync(guests(false));
    expect(applied.at(-1)?.networks[0]?.endpoints?.[0]?.backends).toEqual([]);
    expect(networks.serves("ins_1", [80])).toBe(false);
    await networks.sync(guests(true));
    // Probed through the tunnel, then backends: both guests, no tap on the gateway.
    for (let i = 0; i < 50 && served < 2; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(served).toBe(2);
    expect(networks.serves("ins_1", [80]) && networks.serves("ins_2", [80])).toBe(true);
    const network = applied.at(-1)?.networks[0];
    expect(network).toMatchObject({
      ports: [],
      peers: ["198.51.100.1", "198.51.100.2"],
      gateway: { address: "10.128.0.1" },
      remoteGuests: ["10.128.0.5", "10.128.0.6"],
    });
    expect(network?.endpoints).toEqual([
      { hostPort: 30000, protocol: "tcp", guestPort: 80, backends: ["10.128.0.5", "10.128.0.6"] },
    ]);
    expect(networks.endpointsOf(GROUP, [80])).toEqual([
      { port: 80, protocol: "tcp", address: "192.0.2.100:30000" },
    ]);

    // A restarted manager gets the guests' part in their endpoints back from the assignments.
    const again = driverOn(hosts);
    await again.reattach();
    expect(again.status("ins_1").spec.networkInterface?.endpoints).toEqual({
      group: GROUP,
      gateway: "10.128.0.1",
      ports: [80],
    });
  });

  it("without a guest network of the manager's own, offers none and waits for no port", () => {
    const networks = new HostAgentNetworks({
      registry: registry(),
      firewalls: new NetworkFirewalls(join(dir, "firewalls.json")),
    });
    expect(networks.offersEndpoints).toBe(false);
    expect(networks.serves("ins_1", [80])).toBe(true);
    expect(networks.endpointsOf(GROUP, [80])).toEqual([]);
  });
});

describe("the hosts API", () => {
  const lookups: string[] = [];
  function app(hosts = registry(), sessions = new HostSessions()) {
    return {
      hosts,
      sessions,
      app: createHostApp({
        registry: hosts,
        sessions,
        verifyCredential: async (credential) => credential === "the-datacenter-credential",
        syncIntervalMs: 20_000,
        downAfterMs: 30_000,
        lookupName: async (instanceId, name) => {
          lookups.push(`${instanceId} ${name}`);
          if (name === "down.globalvm.internal") throw new Error("control plane unreachable");
          return name === "web.globalvm.internal" ? { name, addresses: ["10.128.0.7"] } : undefined;
        },
      }),
    };
  }
  const put = (token: string) => ({
    method: "PUT",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(registration),
  });
  const sessionOf = async (api: ReturnType<typeof app>["app"], host: string) =>
    (
      (await (await api.request(`/v1/hosts/${host}`, put("the-datacenter-credential"))).json()) as {
        session_token: string;
      }
    ).session_token;
  const post = (token: string, body: unknown) => ({
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });

  it("registers a host only with a credential of the datacenter", async () => {
    const { app: api } = app();
    expect((await api.request("/v1/hosts/h1", put("not-one"))).status).toBe(401);
    const answer = await api.request("/v1/hosts/h1", put("the-datacenter-credential"));
    expect(answer.status).toBe(200);
    expect(await answer.json()).toMatchObject({ host: "h1", sync_interval_ms: 20_000 });
  });

  it("syncs with the host's own session, names a bad field, and holds a waiting sync until an assignment", async () => {
    const { app: api, hosts } = app();
    const h1 = await sessionOf(api, "h1");
    const h2 = await sessionOf(api, "h2");
    expect((await api.request("/v1/hosts/h1/sync", post(h2, sync()))).status).toBe(403);
    expect((await api.request("/v1/hosts/h1/sync", post("gvh_nobody", sync()))).status).toBe(401);
    const bad = await api.request("/v1/hosts/h1/sync", post(h1, { ...sync(), free: { vcpus: -1 } }));
    expect(bad.status).toBe(400);
    expect(JSON.stringify(await bad.json())).toContain("free");

    const first = (await (await api.request("/v1/hosts/h1/sync", post(h1, sync()))).json()) as {
      revision: number;
    };
    const started = Date.now();
    const waiting = api.request(
      "/v1/hosts/h1/sync?wait=10",
      post(h1, { ...sync(), revision: first.revision }),
    );
    setTimeout(() => driverOn(hosts).create(spec("ins_1")), 200);
    const answer = (await (await waiting).json()) as {
      revision: number;
      assignments: { instance_id: string }[];
    };
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(answer.revision).toBeGreaterThan(first.revision);
    expect(answer.assignments.map((a) => a.instance_id)).toEqual(["ins_1"]);
  });

  it("resolves internal names only for a host's own guests, with its own session", async () => {
    const GUEST = "ins_01jd3k9x4m6q8r2t5v7w9y1z3b";
    const { app: api, hosts } = app();
    const h1 = await sessionOf(api, "h1");
    const h2 = await sessionOf(api, "h2");
    for (const name of ["h1", "h2"]) hosts.sync(name, sync());
    await driverOn(hosts).create(spec(GUEST));
    const on = hosts.hostOf(GUEST)?.name as string;
    const [own, other] = on === "h1" ? [h1, h2] : [h2, h1];
    const otherName = on === "h1" ? "h2" : "h1";
    const get = (host: string, token: string, name: string, instance = GUEST) =>
      api.request(`/v1/hosts/${host}/instances/${instance}/names/${name}`, {
        headers: { authorization: `Bearer ${token}` },
      });

    const answer = await get(on, own, "web.globalvm.internal");
    expect(answer.status).toBe(200);
    expect(await answer.json()).toEqual({ name: "web.globalvm.internal", addresses: ["10.128.0.7"] });
    expect((await get(on, "gvh_nobody", "web.globalvm.internal")).status).toBe(401);
    expect((await get(on, other, "web.globalvm.internal")).status).toBe(403);
    // Another host's guest: its project is none of this host's business.
    lookups.length = 0;
    const notHers = await get(otherName, other, "web.globalvm.internal");
    expect(notHers.status).toBe(404);
    expect(JSON.stringify(await notHers.json())).toContain(`not assigned to host ${otherName}`);
    expect(lookups).toEqual([]);
    expect((await get(on, own, "nothing.globalvm.internal")).status).toBe(404);
    expect((await get(on, own, "down.globalvm.internal")).status).toBe(503);
  });
});
