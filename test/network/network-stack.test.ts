// globalvm with guest networking, as a user drives it, across datacenters: three namespaces
// stand for the WAN (with the control plane) and two datacenter hosts (a manager each), joined
// by a bridge in the WAN namespace (network-stack-process.ts). A client group in us-east is
// handed the address of a web group in eu-west through metadata_from, and reaches it over TCP
// through the two hosts' VXLAN tunnels, and goes on doing so while both managers are killed with
// -9 and started again (the kernel carries the traffic, the restarted managers adopt it).
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureGuestImage, REPO_ROOT } from "../support/compute.ts";
import type { InstanceView } from "../support/vm-groups.ts";
import { removeNamespaces, runFlowInWan } from "./namespaces.ts";

const tag = randomBytes(3).toString("hex");
const wan = `gvw-${tag}`;
const CONTROL_PLANE_HOST = "192.0.2.100";
// eu-west's manager runs on its host; us-east's runs beside the control plane and puts its
// guests and their networking on its host (--guest-network-netns, as `globalvm up` does).
const regions = [
  { name: "eu-west", netns: `gva-${tag}`, underlay: "192.0.2.1", manager: "host" },
  { name: "us-east", netns: `gvb-${tag}`, underlay: "192.0.2.2", manager: "beside" },
];
const created: string[] = [];

describe("a VM group reaches another in another region by the address metadata_from hands it", () => {
  let outcome: {
    web?: InstanceView[];
    client?: InstanceView[];
    intruder?: InstanceView[];
    groups?: { network: string; datacenter: string }[];
    afterRestart?: {
      talk: string;
      instances: InstanceView[];
      devices: Record<string, string[]>;
      qemus: Record<string, number>;
    };
    firewall?: { onWebHostMs: number; guestRefusedMs: number; guestRestoredMs: number; restored: string };
    afterDelete?: { devices: Record<string, string[]>; nftTables: Record<string, string> };
    error?: string;
    logs?: string;
  };

  beforeAll(() => {
    ensureGuestImage();
    outcome = runFlowInWan({
      script: join(REPO_ROOT, "test/network/network-stack-process.ts"),
      wan,
      controlPlaneHost: CONTROL_PLANE_HOST,
      regions,
      created,
      timeoutMs: 840_000,
    });
  }, 900_000);

  afterAll(() => removeNamespaces(created));

  it("ran the flow", () => {
    expect(outcome.error, outcome.logs).toBeUndefined();
  });

  it("gives each instance an address in its datacenter's subnet of the default network", () => {
    const [web] = outcome.web ?? [];
    const [client] = outcome.client ?? [];
    const [webGroup, clientGroup] = outcome.groups ?? [];
    expect(webGroup?.datacenter).toBe("eu-west-a");
    expect(clientGroup?.datacenter).toBe("us-east-a");
    expect(clientGroup?.network).toBe(webGroup?.network);
    expect(web?.network_ip).toMatch(/^10\.128\.\d+\.\d+$/);
    expect(client?.network_ip).toMatch(/^10\.128\.\d+\.\d+$/);
    // Two datacenters, two /20 subnets.
    const subnet = (ip: string | null | undefined) => Math.floor(Number(ip?.split(".")[2]) / 16);
    expect(subnet(client?.network_ip)).not.toBe(subnet(web?.network_ip));
    expect(web?.address).toBe(web?.network_ip);
    expect(client?.address).toBe(client?.network_ip);
  });

  it("hands the client web-0's address, and the client fetches from it over TCP across the tunnel", () => {
    const [web] = outcome.web ?? [];
    const [client] = outcome.client ?? [];
    expect(web?.guest_attributes["net/serving"]).toBe("yes");
    expect(client?.guest_attributes["net/peer"]).toBe(web?.address);
    expect(client?.guest_attributes["net/tcp"]).toBe("ok");
  });

  it("a guest of another project, on web's host, in the same range, exchanges no packet with web", () => {
    const [web] = outcome.web ?? [];
    const [intruder] = outcome.intruder ?? [];
    expect(intruder?.network_ip).toMatch(/^10\.128\.0\./);
    expect(intruder?.network_ip).not.toBe(web?.network_ip);
    expect(intruder?.guest_attributes["net/ping"]).toBe("refused");
    expect(intruder?.guest_attributes["net/tcp"]).toBe("refused");
  });

  it("a guest reaches neither its manager's host nor its HTTP port, even routing toward them", () => {
    const [client] = outcome.client ?? [];
    expect(client?.guest_attributes["net/host-ping"]).toBe("refused");
    expect(client?.guest_attributes["net/host-http"]).toBe("refused");
  });

  it("keeps guests talking across datacenters while both managers are killed with -9 and restarted", () => {
    expect(outcome.afterRestart?.talk).toBe("ok=40 failed=0");
  });

  it("re-adopts after the restart: one bridge, tunnel and tap per host, one QEMU per instance", () => {
    const after = outcome.afterRestart;
    for (const region of regions) expect(after?.devices[region.name]).toHaveLength(3);
    expect(after?.instances.map((i) => [i.id, i.address])).toEqual(
      [...(outcome.web ?? []), ...(outcome.client ?? [])].map((i) => [i.id, i.address]),
    );
    for (const instance of after?.instances ?? []) expect(after?.qemus[instance.id]).toBe(1);
  });

  it("enforces a firewall rule in another datacenter within 2 s, and lifts it when it is deleted", () => {
    const firewall = outcome.firewall;
    expect(firewall, outcome.logs).toBeDefined();
    console.log(`firewall timings (ms): ${JSON.stringify(firewall)}`);
    expect(firewall?.onWebHostMs).toBeLessThan(2000);
    // The guest tries once a second, each refused try taking its 1 s timeout; then its report.
    expect(firewall?.guestRefusedMs).toBeLessThan(15_000);
    expect(firewall?.restored).toMatch(/^\d+ ok$/);
    // ok, refused, ok: one change each way, none missed.
    expect(Number(firewall?.restored.split(" ")[0])).toBeGreaterThanOrEqual(3);
  });

  it("leaves no tap, bridge, tunnel or nftables table behind once the groups are deleted", () => {
    for (const region of regions) {
      expect(outcome.afterDelete?.devices[region.name]).toEqual([]);
      expect(outcome.afterDelete?.nftTables[region.name]).not.toMatch(/globalvm/);
    }
  });
});
