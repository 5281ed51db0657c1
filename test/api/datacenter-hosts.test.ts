// A datacenter's hosts: stored from its manager's heartbeat (replaced by each one that names
// hosts, removed by one that names none), listed by GET /v1/datacenters/{name}/hosts to the
// same readers as the datacenter itself, and shown down while the datacenter is not up.
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { datacenters } from "../../api/catalog/schema.ts";
import { createTestApi, type TestApi } from "../support/api.ts";
import { CATALOG_KINDS } from "../support/catalogs.ts";

const capacity = { vcpus: 8, memory_mb: 16_384, disk_bytes: 100e9 };
const heartbeat = {
  manager_url: "http://127.0.0.1:9001",
  capacity,
  free: { vcpus: 6, memory_mb: 12_000, disk_bytes: 90e9 },
  chunk_count: 10,
  image_count: 1,
};

function reportedHost(name: string, more: Record<string, unknown> = {}) {
  return {
    name,
    state: "up",
    arch: "x86_64",
    capacity: { vcpus: 4, memory_mb: 8192, disk_bytes: 50e9 },
    free: { vcpus: 3, memory_mb: 7000, disk_bytes: 40e9 },
    instance_count: 1,
    cached_versions: 2,
    cache_bytes: 3_000_000,
    last_seen_at: "2026-01-02T03:04:05.000Z",
    ...more,
  };
}

describe.each(CATALOG_KINDS)("datacenter hosts (%s)", (kind) => {
  let api: TestApi;
  let project: Awaited<ReturnType<TestApi["createProject"]>>;
  let other: Awaited<ReturnType<TestApi["createProject"]>>;
  let managerToken: string;
  beforeAll(async () => {
    api = await createTestApi(kind);
    project = await api.createProject("acme");
    other = await api.createProject("other");
    await api.createRegion("eu-west");
    await api.createRegion("us-east");
    const credential = await api.expectStatus(201, "POST", "/v1/manager-credentials", {
      body: { region: "eu-west", datacenter: "eu-west-a" },
    });
    managerToken = credential.secret;
  });
  afterAll(() => api.close());

  const beat = (hosts?: unknown[], datacenter = "eu-west-a", token = managerToken) =>
    api.call("POST", `/v1/datacenters/${datacenter}/heartbeat`, {
      token: datacenter === "eu-west-a" ? token : undefined,
      body: { ...heartbeat, ...(hosts ? { hosts } : {}) },
    });
  const hostsOf = (datacenter = "eu-west-a", token = project.readToken, query = "") =>
    api.expectStatus(200, "GET", `/v1/datacenters/${datacenter}/hosts${query}`, { token });

  it("a heartbeat's hosts are stored and listed by name, with their datacenter", async () => {
    expect((await beat([reportedHost("host-b", { arch: "aarch64" }), reportedHost("host-a")])).status).toBe(
      200,
    );
    const page = await hostsOf();
    expect(page.next_page_token).toBeNull();
    expect(page.items).toEqual([
      { ...reportedHost("host-a"), datacenter: "eu-west-a" },
      { ...reportedHost("host-b", { arch: "aarch64" }), datacenter: "eu-west-a" },
    ]);
    // Another datacenter's hosts are its own.
    expect((await hostsOf("us-east-a")).items).toEqual([]);
  });

  it("names every host agent's underlay among the tunnel peers, its own datacenter's included", async () => {
    const answer = await beat([
      reportedHost("host-a", { underlay_address: "198.51.100.2" }),
      reportedHost("host-b", { underlay_address: "198.51.100.1" }),
      reportedHost("host-c"),
    ]);
    expect(answer.status).toBe(200);
    // Its manager hands them to each of its hosts, which leaves itself out.
    expect(answer.body.underlay_peers).toEqual(["198.51.100.1", "198.51.100.2"]);
    // The address is not part of the public view of a host.
    expect((await hostsOf()).items[0]).not.toHaveProperty("underlay_address");
    const bad = await beat([reportedHost("host-a", { underlay_address: "nowhere" })]);
    expect(bad.status).toBe(400);
    expect(bad.body.errors[0].path).toBe("hosts[0].underlay_address");
  });

  it("the next heartbeat's hosts replace them, a down host among them", async () => {
    await beat([reportedHost("host-c"), reportedHost("host-a", { state: "down", instance_count: 0 })]);
    const page = await hostsOf();
    expect(page.items.map((h: { name: string; state: string; instance_count: number }) => h)).toMatchObject([
      { name: "host-a", state: "down", instance_count: 0 },
      { name: "host-c", state: "up" },
    ]);
  });

  it("a heartbeat without hosts removes them all (the manager runs its guests itself)", async () => {
    await beat([reportedHost("host-a")]);
    await beat([reportedHost("host-a"), reportedHost("host-b")], "us-east-a");
    expect((await beat()).status).toBe(200);
    expect((await hostsOf()).items).toEqual([]);
    expect((await hostsOf("us-east-a")).items.map((h: { name: string }) => h.name)).toEqual([
      "host-a",
      "host-b",
    ]);
    await beat(undefined, "us-east-a");
  });

  it("a heartbeat naming a host twice is a 400 naming the field, and changes nothing", async () => {
    await beat([reportedHost("host-a")]);
    const twice = await beat([reportedHost("host-a"), reportedHost("host-b"), reportedHost("host-a")]);
    expect([twice.status, twice.body.errors]).toEqual([
      400,
      [{ path: "hosts[2].name", message: "host host-a is named twice" }],
    ]);
    const bad = await beat([reportedHost("host-a", { arch: "sparc" })]);
    expect(bad.status).toBe(400);
    expect(bad.body.errors[0].path).toBe("hosts[0].arch");
    expect((await hostsOf()).items.map((h: { name: string }) => h.name)).toEqual(["host-a"]);
  });

  it("pages hosts with an opaque cursor", async () => {
    await beat(["h1", "h2", "h3", "h4", "h5"].map((name) => reportedHost(name)));
    const names: string[] = [];
    let query = "?page_size=2";
    for (;;) {
      const page = await hostsOf("eu-west-a", project.readToken, query);
      expect(page.items.length).toBeLessThanOrEqual(2);
      names.push(...page.items.map((h: { name: string }) => h.name));
      if (!page.next_page_token) break;
      query = `?page_size=2&page_token=${page.next_page_token}`;
    }
    expect(names).toEqual(["h1", "h2", "h3", "h4", "h5"]);
    const bad = await api.call("GET", "/v1/datacenters/eu-west-a/hosts?page_token=nonsense", {
      token: project.token,
    });
    expect([bad.status, bad.body.code]).toEqual([400, "invalid_page_token"]);
  });

  it("hosts are down whenever their datacenter is not up: their facts are as old as its heartbeat", async () => {
    await beat([reportedHost("host-a"), reportedHost("host-b")]);
    expect((await hostsOf()).items.map((h: { state: string }) => h.state)).toEqual(["up", "up"]);
    for (const age of [60_000, 10 * 60_000]) {
      await api.catalog.db
        .update(datacenters)
        .set({ lastHeartbeatAt: new Date(Date.now() - age) })
        .where(eq(datacenters.name, "eu-west-a"));
      const datacenter = await api.expectStatus(200, "GET", "/v1/datacenters/eu-west-a");
      expect(datacenter.status).toBe(age === 60_000 ? "degraded" : "down");
      const page = await hostsOf();
      expect(page.items.map((h: { name: string; state: string }) => [h.name, h.state])).toEqual([
        ["host-a", "down"],
        ["host-b", "down"],
      ]);
    }
    // The next heartbeat brings them back as their manager says.
    await beat([reportedHost("host-a")]);
    expect((await hostsOf()).items.map((h: { state: string }) => h.state)).toEqual(["up"]);
  });

  it("an unknown datacenter is a 404 like the datacenter's own", async () => {
    const response = await api.call("GET", "/v1/datacenters/mars-a/hosts", { token: project.token });
    expect([response.status, response.body.code]).toEqual([404, "not_found"]);
    expect(response.body.detail).toBe("datacenter mars-a does not exist");
  });

  it("any project's token reads them, as it reads datacenters; no token or a manager's credential does not", async () => {
    await beat([reportedHost("host-a")]);
    for (const token of [project.token, project.readToken, other.token, undefined]) {
      expect((await hostsOf("eu-west-a", token)).items.map((h: { name: string }) => h.name)).toEqual([
        "host-a",
      ]);
    }
    const anonymous = await api.call("GET", "/v1/datacenters/eu-west-a/hosts", { token: null });
    expect([anonymous.status, anonymous.body.code]).toEqual([401, "unauthenticated"]);
    const manager = await api.call("GET", "/v1/datacenters/eu-west-a/hosts", { token: managerToken });
    expect([manager.status, manager.body.code]).toEqual([403, "forbidden"]);
    // Only the datacenter's own manager (or an admin) reports its hosts.
    expect((await beat([reportedHost("x")], "eu-west-a", project.token)).status).toBe(403);
    const otherManager = await api.call("POST", "/v1/datacenters/us-east-a/heartbeat", {
      token: managerToken,
      body: { ...heartbeat, hosts: [reportedHost("x")] },
    });
    expect(otherManager.status).toBe(403);
    expect((await hostsOf("us-east-a")).items).toEqual([]);
  });
});
