import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestApi, type TestApi } from "../support/api.ts";
import { CATALOG_KINDS } from "../support/catalogs.ts";

const heartbeat = {
  manager_url: "http://127.0.0.1:9001",
  capacity: { vcpus: 8, memory_mb: 16_384, disk_bytes: 100e9 },
  free: { vcpus: 6, memory_mb: 12_000, disk_bytes: 90e9 },
  chunk_count: 10,
  image_count: 1,
};

describe.each(CATALOG_KINDS)("regions and datacenters (%s)", (kind) => {
  let api: TestApi;
  let project: Awaited<ReturnType<TestApi["createProject"]>>;
  beforeAll(async () => {
    api = await createTestApi(kind);
    project = await api.createProject("acme");
  });
  afterAll(() => api.close());

  describe("happy path", () => {
    it("registers regions with a datacenter each and lists them to any project", async () => {
      await api.createRegion("eu-west");
      await api.createRegion("us-east");
      const list = await api.expectStatus(200, "GET", "/v1/regions", { token: project.readToken });
      expect(list.items.map((r: { name: string; datacenters: string[] }) => [r.name, r.datacenters])).toEqual(
        [
          ["eu-west", ["eu-west-a"]],
          ["us-east", ["us-east-a"]],
        ],
      );
      const region = await api.expectStatus(200, "GET", "/v1/regions/eu-west", { token: project.token });
      expect(region.datacenters).toEqual(["eu-west-a"]);
      const dcs = await api.expectStatus(200, "GET", "/v1/datacenters?region=us-east", {
        token: project.token,
      });
      expect(dcs.items.map((d: { name: string }) => d.name)).toEqual(["us-east-a"]);
    });

    it("a heartbeat makes a datacenter up and records its capacity", async () => {
      const before = await api.expectStatus(200, "GET", "/v1/datacenters/eu-west-a");
      expect(before.status).toBe("unknown");
      const after = await api.expectStatus(200, "POST", "/v1/datacenters/eu-west-a/heartbeat", {
        body: heartbeat,
      });
      expect(after.status).toBe("up");
      expect(after.free).toEqual(heartbeat.free);
      expect(after.manager_url).toBe(heartbeat.manager_url);
    });

    it("a heartbeat names the other datacenters' guest-network underlays, never its own", async () => {
      const beat = (name: string, underlay?: string) =>
        api.expectStatus(200, "POST", `/v1/datacenters/${name}/heartbeat`, {
          body: { ...heartbeat, ...(underlay ? { underlay_address: underlay } : {}) },
        });
      expect((await beat("eu-west-a", "192.0.2.1")).underlay_peers).toEqual([]);
      expect((await beat("us-east-a", "192.0.2.2")).underlay_peers).toEqual(["192.0.2.1"]);
      expect((await beat("eu-west-a", "192.0.2.1")).underlay_peers).toEqual(["192.0.2.2"]);
      // A manager that stops attaching guests leaves the others' tunnels.
      await beat("us-east-a");
      expect((await beat("eu-west-a", "192.0.2.1")).underlay_peers).toEqual([]);
      const bad = await api.call("POST", "/v1/datacenters/eu-west-a/heartbeat", {
        body: { ...heartbeat, underlay_address: "not-an-address" },
      });
      expect(bad.status).toBe(400);
      expect(bad.body.errors[0].path).toBe("underlay_address");
    });

    it("pages regions with an opaque cursor", async () => {
      const first = await api.expectStatus(200, "GET", "/v1/regions?page_size=1");
      expect(first.items).toHaveLength(1);
      expect(first.next_page_token).toEqual(expect.any(String));
      const second = await api.expectStatus(
        200,
        "GET",
        `/v1/regions?page_size=1&page_token=${first.next_page_token}`,
      );
      expect(second.items[0].name).not.toBe(first.items[0].name);
    });
  });

  describe("errors", () => {
    it("a datacenter in an unknown region is a 422 naming region; a duplicate is a 409", async () => {
      const unknown = await api.call("POST", "/v1/datacenters", {
        body: { name: "mars-a", region: "mars", capacity: heartbeat.capacity },
      });
      expect(unknown.status).toBe(422);
      expect(unknown.body.errors).toEqual([{ path: "region", message: "unknown region" }]);
      const dup = await api.call("POST", "/v1/datacenters", {
        body: { name: "eu-west-a", region: "eu-west", capacity: heartbeat.capacity },
      });
      expect(dup.status).toBe(409);
    });

    it("a duplicate region is a 409 and a bad name a 400 naming the field", async () => {
      await api.expectStatus(201, "POST", "/v1/regions", { body: { name: "sa-east" } });
      const dup = await api.call("POST", "/v1/regions", { body: { name: "sa-east", display_name: "again" } });
      expect([dup.status, dup.body.code]).toEqual([409, "already_exists"]);
      const region = await api.expectStatus(200, "GET", "/v1/regions/sa-east");
      expect(region.display_name).toBe("sa-east");
      const bad = await api.call("POST", "/v1/regions", { body: { name: "Not A Name" } });
      expect(bad.status).toBe(400);
      expect(bad.body.errors.map((e: { path: string }) => e.path)).toEqual(["name"]);
    });

    it("an unknown region or datacenter is a 404", async () => {
      for (const path of ["/v1/regions/mars", "/v1/datacenters/mars-a"]) {
        const response = await api.call("GET", path, { token: project.token });
        expect([response.status, response.body.code], path).toEqual([404, "not_found"]);
      }
    });

    it("negative capacity and unknown datacenters are refused", async () => {
      const bad = await api.call("POST", "/v1/datacenters/eu-west-a/heartbeat", {
        body: { ...heartbeat, free: { ...heartbeat.free, vcpus: -1 } },
      });
      expect(bad.status).toBe(400);
      expect(bad.body.errors[0].path).toBe("free.vcpus");
      const missing = await api.call("POST", "/v1/datacenters/nowhere-a/heartbeat", { body: heartbeat });
      expect(missing.status).toBe(404);
    });
  });

  describe("security", () => {
    it("only admins register regions, datacenters and heartbeats", async () => {
      for (const [path, body] of [
        ["/v1/regions", { name: "ap-south" }],
        ["/v1/datacenters", { name: "x-a", region: "eu-west", capacity: heartbeat.capacity }],
        ["/v1/datacenters/eu-west-a/heartbeat", heartbeat],
      ] as const) {
        expect((await api.call("POST", path, { token: project.token, body })).status, path).toBe(403);
      }
      expect((await api.call("GET", "/v1/regions", { token: null })).status).toBe(401);
    });
  });
});
