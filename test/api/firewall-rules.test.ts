import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestApi, type TestApi } from "../support/api.ts";
import { CATALOG_KINDS } from "../support/catalogs.ts";

describe.each(CATALOG_KINDS)("firewall rules (%s)", (kind) => {
  let api: TestApi;
  let acme: Awaited<ReturnType<TestApi["createProject"]>>;
  let other: Awaited<ReturnType<TestApi["createProject"]>>;
  let network: string;
  const rules = () => `/v1/networks/${network}/firewall-rules`;
  beforeAll(async () => {
    api = await createTestApi(kind);
    acme = await api.createProject("acme");
    other = await api.createProject("other");
    network = (
      await api.expectStatus(201, "POST", "/v1/networks", {
        token: acme.token,
        body: { name: "backend", cidr: "10.20.0.0/16" },
      })
    ).id;
  });
  afterAll(() => api.close());

  it("creates rules with GCE's defaults, lists them in evaluation order, changes and deletes one", async () => {
    const web = await api.expectStatus(201, "POST", rules(), {
      token: acme.token,
      body: {
        name: "web-from-anywhere",
        action: "allow",
        protocol: "tcp",
        ports: ["80", "8000-8080"],
        source: { cidr: "0.0.0.0/0" },
      },
    });
    expect(web).toMatchObject({
      network_id: network,
      direction: "ingress",
      priority: 1000,
      description: "",
      ports: ["80", "8000-8080"],
      source: { cidr: "0.0.0.0/0" },
    });
    expect(web.id).toMatch(/^fwr_/);
    const deny = await api.expectStatus(201, "POST", rules(), {
      token: acme.token,
      body: {
        name: "no-batch",
        priority: 10,
        action: "deny",
        protocol: "all",
        source: { vm_group: "batch" },
      },
    });
    expect(deny.source).toEqual({ vm_group: "batch" });

    const listed = await api.expectStatus(200, "GET", rules(), { token: acme.readToken });
    expect(listed.items.map((r: { name: string }) => r.name)).toEqual(["no-batch", "web-from-anywhere"]);
    expect(await api.expectStatus(200, "GET", `${rules()}/${web.id}`, { token: acme.readToken })).toEqual(
      web,
    );

    const changed = await api.expectStatus(200, "PATCH", `${rules()}/${deny.id}`, {
      token: acme.token,
      body: { priority: 2000, source: { cidr: "10.20.0.0/24" } },
    });
    expect(changed).toMatchObject({ priority: 2000, action: "deny", source: { cidr: "10.20.0.0/24" } });
    const reordered = await api.expectStatus(200, "GET", rules(), { token: acme.readToken });
    expect(reordered.items.map((r: { name: string }) => r.name)).toEqual(["web-from-anywhere", "no-batch"]);

    await api.expectStatus(204, "DELETE", `${rules()}/${deny.id}`, { token: acme.token });
    await api.expectStatus(404, "GET", `${rules()}/${deny.id}`, { token: acme.readToken });
  });

  it("refuses bad input naming the field, and keeps nothing of it", async () => {
    const before = await api.expectStatus(200, "GET", rules(), { token: acme.readToken });
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ source: { cidr: "10.0.0.0/8", vm_group: "web" } }, "source"],
      [{ source: {} }, "source"],
      [{ source: { cidr: "10.0.0.1/8" } }, "source.cidr"],
      [{ ports: ["70000"] }, "ports[0]"],
      [{ ports: ["90-80"] }, "ports[0]"],
      [{ protocol: "icmp", ports: ["80"] }, "ports"],
      [{ priority: 70_000 }, "priority"],
      [{ action: "maybe" }, "action"],
      [{ direction: "egress" }, "direction"],
    ];
    for (const [change, path] of cases) {
      const body = {
        name: "bad",
        action: "allow",
        protocol: "tcp",
        source: { cidr: "0.0.0.0/0" },
        ...change,
      };
      const refused = await api.call("POST", rules(), { token: acme.token, body });
      expect(refused.status, JSON.stringify(change)).toBe(400);
      expect(refused.body.code).toBe("validation_failed");
      expect(
        refused.body.errors.map((e: { path: string }) => e.path),
        JSON.stringify(change),
      ).toContain(path);
    }
    const existing = before.items[0];
    const badPatch = await api.call("PATCH", `${rules()}/${existing.id}`, {
      token: acme.token,
      body: { protocol: "icmp" },
    });
    expect(badPatch.status).toBe(400);
    expect(badPatch.body.errors).toEqual([expect.objectContaining({ path: "ports" })]);
    expect(await api.expectStatus(200, "GET", rules(), { token: acme.readToken })).toEqual(before);
  });

  it("refuses a second rule of one name in a network", async () => {
    const body = { name: "twice", action: "allow", protocol: "udp", source: { cidr: "10.0.0.0/8" } };
    await api.expectStatus(201, "POST", rules(), { token: acme.token, body });
    const again = await api.call("POST", rules(), { token: acme.token, body });
    expect(again.status).toBe(409);
    expect(again.body.code).toBe("already_exists");
  });

  it("answers another project's network and rules as not found, and a read token's writes as forbidden", async () => {
    const rule = (await api.expectStatus(200, "GET", rules(), { token: acme.readToken })).items[0];
    const body = { name: "sneaky", action: "allow", protocol: "all", source: { cidr: "0.0.0.0/0" } };
    expect((await api.call("GET", rules(), { token: other.token })).status).toBe(404);
    expect((await api.call("POST", rules(), { token: other.token, body })).status).toBe(404);
    expect((await api.call("GET", `${rules()}/${rule.id}`, { token: other.token })).status).toBe(404);
    expect(
      (await api.call("PATCH", `${rules()}/${rule.id}`, { token: other.token, body: { action: "deny" } }))
        .status,
    ).toBe(404);
    expect((await api.call("DELETE", `${rules()}/${rule.id}`, { token: other.token })).status).toBe(404);
    // A rule of acme's named under other's network is not found either.
    const otherNetwork = (await api.expectStatus(200, "GET", "/v1/networks", { token: other.token })).items[0]
      .id;
    expect(
      (
        await api.call("GET", `/v1/networks/${otherNetwork}/firewall-rules/${rule.id}`, {
          token: other.token,
        })
      ).status,
    ).toBe(404);

    const forbidden = await api.call("POST", rules(), { token: acme.readToken, body });
    expect(forbidden.status).toBe(403);
    expect(forbidden.body.code).toBe("forbidden");
    expect((await api.call("DELETE", `${rules()}/${rule.id}`, { token: acme.readToken })).status).toBe(403);
    expect(await api.expectStatus(200, "GET", `${rules()}/${rule.id}`, { token: acme.readToken })).toEqual(
      rule,
    );
  });

  it("goes with its network", async () => {
    const doomed = await api.expectStatus(201, "POST", "/v1/networks", {
      token: acme.token,
      body: { name: "doomed", cidr: "10.30.0.0/16" },
    });
    const rule = await api.expectStatus(201, "POST", `/v1/networks/${doomed.id}/firewall-rules`, {
      token: acme.token,
      body: { name: "any", action: "allow", protocol: "all", source: { cidr: "0.0.0.0/0" } },
    });
    await api.expectStatus(204, "DELETE", `/v1/networks/${doomed.id}`, { token: acme.token });
    await api.expectStatus(404, "GET", `/v1/networks/${doomed.id}/firewall-rules/${rule.id}`, {
      token: acme.readToken,
    });
  });
});
