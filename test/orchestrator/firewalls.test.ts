import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { firewallRules } from "../../api/catalog/schema.ts";
import { newlyUp } from "../../api/orchestrator/datacenter-watch.ts";
import { compileFirewall, firewallOfNetwork } from "../../api/orchestrator/firewalls.ts";
import { createTestApi, type TestApi } from "../support/api.ts";

const rule = (fields: Partial<typeof firewallRules.$inferSelect>): typeof firewallRules.$inferSelect => ({
  id: "fwr_x",
  networkId: "net_x",
  name: "r",
  description: "",
  priority: 1000,
  action: "allow",
  protocol: "tcp",
  ports: [],
  sourceCidr: null,
  sourceVmGroup: null,
  createdAt: new Date(0),
  updatedAt: new Date(0),
  ...fields,
});

describe("a network's firewall as managers get it", () => {
  it("resolves a group source to its instances' addresses, and keeps the rules' order", () => {
    const firewall = compileFirewall({
      network: { name: "backend", cidr: "10.20.0.0/16" },
      rules: [
        rule({ action: "deny", sourceVmGroup: "batch", protocol: "all" }),
        rule({ sourceCidr: "0.0.0.0/0", ports: ["80"] }),
        rule({ sourceVmGroup: "nobody-yet" }),
      ],
      groupAddresses: new Map([["batch", ["10.20.0.5", "10.20.16.2"]]]),
      revision: 7,
    });
    expect(firewall).toEqual({
      revision: 7,
      rules: [
        { action: "deny", protocol: "all", ports: [], sources: ["10.20.0.5/32", "10.20.16.2/32"] },
        { action: "allow", protocol: "tcp", ports: ["80"], sources: ["0.0.0.0/0"] },
        // No instance yet: the rule matches nothing until the group has one.
        { action: "allow", protocol: "tcp", ports: [], sources: [] },
      ],
      otherwise_allow: [],
    });
  });

  it("lets the default network's own instances talk when no rule says otherwise, as GCE's default does", () => {
    const firewall = compileFirewall({
      network: { name: "default", cidr: "10.128.0.0/9" },
      rules: [],
      groupAddresses: new Map(),
      revision: 1,
    });
    expect(firewall.otherwise_allow).toEqual(["10.128.0.0/9"]);
  });
});

describe("a network's firewall read from the catalog", () => {
  let api: TestApi;
  beforeAll(async () => {
    api = await createTestApi("pglite");
  });
  afterAll(() => api.close());

  it("orders rules by priority then name, newer revisions later", async () => {
    const acme = await api.createProject("acme");
    const network = await api.expectStatus(201, "POST", "/v1/networks", {
      token: acme.token,
      body: { name: "backend", cidr: "10.20.0.0/16" },
    });
    const add = (name: string, priority: number, cidr: string) =>
      api.expectStatus(201, "POST", `/v1/networks/${network.id}/firewall-rules`, {
        token: acme.token,
        body: { name, priority, action: "allow", protocol: "all", source: { cidr } },
      });
    await add("b", 10, "10.2.0.0/16");
    await add("a", 10, "10.1.0.0/16");
    await add("c", 5, "10.3.0.0/16");
    const first = await firewallOfNetwork(api.services, network.id);
    expect(first?.rules.map((r) => r.sources[0])).toEqual(["10.3.0.0/16", "10.1.0.0/16", "10.2.0.0/16"]);
    expect(first?.otherwise_allow).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 5));
    const second = await firewallOfNetwork(api.services, network.id);
    expect(second?.revision).toBeGreaterThan(first?.revision ?? Number.POSITIVE_INFINITY);
    expect(await firewallOfNetwork(api.services, "net_01jd3k9x4m6q8r2t5v7w9y1z3b")).toBeUndefined();
  });
});

describe("a datacenter that comes back", () => {
  it("is sent its networks' firewalls again: every one at the first look, then the ones that return", () => {
    expect(newlyUp(undefined, ["a", "b"])).toEqual(["a", "b"]);
    expect(newlyUp(new Set(["a", "b"]), ["a", "b"])).toEqual([]);
    // b went down at one look and is back at the next.
    expect(newlyUp(new Set(["a"]), ["a", "b"])).toEqual(["b"]);
  });
});
