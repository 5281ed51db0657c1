import { readFileSync } from "node:fs";
import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { networks } from "../../api/catalog/schema.ts";
import { createTestApi, type TestApi } from "../support/api.ts";
import { CATALOG_KINDS } from "../support/catalogs.ts";

describe.each(CATALOG_KINDS)("networks (%s)", (kind) => {
  let api: TestApi;
  let acme: Awaited<ReturnType<TestApi["createProject"]>>;
  let other: Awaited<ReturnType<TestApi["createProject"]>>;
  beforeAll(async () => {
    api = await createTestApi(kind);
    await api.createRegion("eu-west");
    acme = await api.createProject("acme");
    other = await api.createProject("other");
  });
  afterAll(() => api.close());

  describe("happy path", () => {
    it("gives every new project a default network, as GCE does", async () => {
      const list = await api.expectStatus(200, "GET", "/v1/networks", { token: acme.readToken });
      expect(list.items).toEqual([
        expect.objectContaining({ name: "default", cidr: "10.128.0.0/9", subnet_prefix_length: 20 }),
      ]);
    });

    it("creates, gets, lists, renames and deletes a network", async () => {
      const network = await api.expectStatus(201, "POST", "/v1/networks", {
        token: acme.token,
        body: { name: "backend", cidr: "10.20.0.0/16", labels: { team: "db" } },
      });
      expect(network).toMatchObject({
        name: "backend",
        cidr: "10.20.0.0/16",
        subnet_prefix_length: 24,
        labels: { team: "db" },
      });
      expect(network.id).toMatch(/^net_/);
      expect(
        await api.expectStatus(200, "GET", `/v1/networks/${network.id}`, { token: acme.readToken }),
      ).toEqual(network);
      const byName = await api.expectStatus(200, "GET", "/v1/networks?name=backend", { token: acme.token });
      expect(byName.items.map((n: { id: string }) => n.id)).toEqual([network.id]);

      const renamed = await api.expectStatus(200, "PATCH", `/v1/networks/${network.id}`, {
        token: acme.token,
        body: { name: "database", labels: {} },
      });
      expect(renamed).toMatchObject({ id: network.id, name: "database", cidr: "10.20.0.0/16", labels: {} });

      await api.expectStatus(204, "DELETE", `/v1/networks/${network.id}`, { token: acme.token });
      expect((await api.call("GET", `/v1/networks/${network.id}`, { token: acme.token })).status).toBe(404);
    });

    it("takes a subnet size, and defaults it to the network's own when the network is small", async () => {
      const sized = await api.expectStatus(201, "POST", "/v1/networks", {
        token: acme.token,
        body: { name: "sized", cidr: "172.16.0.0/12", subnet_prefix_length: 20 },
      });
      expect(sized.subnet_prefix_length).toBe(20);
      const small = await api.expectStatus(201, "POST", "/v1/networks", {
        token: acme.token,
        body: { name: "small", cidr: "192.168.7.0/26" },
      });
      expect(small.subnet_prefix_length).toBe(26);
    });
  });

  describe("errors", () => {
    it("names the field of a bad range and creates nothing", async () => {
      const cases: Array<[Record<string, unknown>, string, RegExp]> = [
        [{ cidr: "10.20.0.1/16" }, "cidr", /host bits set; the block is 10\.20\.0\.0\/16/],
        [{ cidr: "10.20.0.0" }, "cidr", /IPv4 CIDR block/],
        [{ cidr: "10.300.0.0/16" }, "cidr", /IPv4 CIDR block/],
        [{ cidr: "8.8.0.0/16" }, "cidr", /within 10\.0\.0\.0\/8/],
        [{ cidr: "10.0.0.0/30" }, "cidr", /between \/8 and \/28/],
        [
          { cidr: "10.20.0.0/16", subnet_prefix_length: 12 },
          "subnet_prefix_length",
          /larger than its network/,
        ],
        [{ cidr: "10.20.0.0/16", subnet_prefix_length: 30 }, "subnet_prefix_length", /./],
        [{ cidr: "10.20.0.0/16", vni: 7 }, "vni", /./],
      ];
      for (const [fields, path, message] of cases) {
        const response = await api.call("POST", "/v1/networks", {
          token: acme.token,
          body: { name: "bad", ...fields },
        });
        expect(response.status, JSON.stringify(fields)).toBe(400);
        const error = response.body.errors.find((e: { path: string }) => e.path === path);
        expect(error?.message, JSON.stringify(response.body)).toMatch(message);
      }
      const list = await api.expectStatus(200, "GET", "/v1/networks?name=bad", { token: acme.token });
      expect(list.items).toEqual([]);
    });

    it("refuses a second network of one name, a rename onto another, and a new range", async () => {
      const first = await api.expectStatus(201, "POST", "/v1/networks", {
        token: acme.token,
        body: { name: "twice", cidr: "10.30.0.0/16" },
      });
      const dup = await api.call("POST", "/v1/networks", {
        token: acme.token,
        body: { name: "twice", cidr: "10.31.0.0/16" },
      });
      expect(dup.status).toBe(409);
      const rename = await api.call("PATCH", `/v1/networks/${first.id}`, {
        token: acme.token,
        body: { name: "default" },
      });
      expect(rename.status).toBe(409);
      const range = await api.call("PATCH", `/v1/networks/${first.id}`, {
        token: acme.token,
        body: { cidr: "10.40.0.0/16" },
      });
      expect(range.status).toBe(400);
      expect(range.body.errors.map((e: { path: string }) => e.path)).toEqual(["cidr"]);
      // Another project may use the same name and the same range.
      await api.expectStatus(201, "POST", "/v1/networks", {
        token: other.token,
        body: { name: "twice", cidr: "10.30.0.0/16" },
      });
    });
  });

  describe("in use", () => {
    it("a network with VM groups cannot be deleted: the 409 names them, and nothing is lost", async () => {
      const net = await api.expectStatus(201, "POST", "/v1/networks", {
        token: acme.token,
        body: { name: "busy", cidr: "10.44.0.0/16" },
      });
      const image = await api.expectStatus(201, "POST", "/v1/images", {
        token: acme.token,
        body: { name: "busy-image", origin_region: "eu-west" },
      });
      for (const name of ["web", "db"]) {
        await api.expectStatus(202, "POST", "/v1/vm-groups", {
          token: acme.token,
          body: {
            name: `busy-${name}`,
            image: image.id,
            region: "eu-west",
            size: 1,
            machine: { vcpus: 1, memory_mb: 256 },
            network: "busy",
          },
        });
      }
      const refused = await api.call("DELETE", `/v1/networks/${net.id}`, { token: acme.token });
      expect(refused.status).toBe(409);
      expect(refused.body.code).toBe("network_in_use");
      expect(refused.body.detail).toContain("busy-db, busy-web");
      await api.expectStatus(200, "GET", `/v1/networks/${net.id}`, { token: acme.token });
    });
  });

  describe("security", () => {
    it("another project's network is a 404 for every verb", async () => {
      const network = await api.expectStatus(201, "POST", "/v1/networks", {
        token: acme.token,
        body: { name: "private", cidr: "10.50.0.0/16" },
      });
      for (const [method, body] of [["GET"], ["PATCH", { labels: {} }], ["DELETE"]] as const) {
        const response = await api.call(method, `/v1/networks/${network.id}`, { token: other.token, body });
        expect(response.status, method).toBe(404);
      }
      const list = await api.expectStatus(200, "GET", "/v1/networks", { token: other.token });
      expect(list.items.map((n: { id: string }) => n.id)).not.toContain(network.id);
    });

    it("another project's network is a 404 even to a rename the caller's own names would refuse", async () => {
      const network = await api.expectStatus(201, "POST", "/v1/networks", {
        token: acme.token,
        body: { name: "renamed-elsewhere", cidr: "10.51.0.0/16" },
      });
      // other has a network named default: the name clash must not be answered before the 404.
      const response = await api.call("PATCH", `/v1/networks/${network.id}`, {
        token: other.token,
        body: { name: "default" },
      });
      expect([response.status, response.body.code]).toEqual([404, "not_found"]);
    });

    it("a read-only token reads but cannot write; an admin token has no project", async () => {
      const created = await api.call("POST", "/v1/networks", {
        token: acme.readToken,
        body: { name: "ro", cidr: "10.60.0.0/16" },
      });
      expect(created.status).toBe(403);
      expect((await api.call("GET", "/v1/networks")).status).toBe(403);
    });
  });

  describe("catalog", () => {
    it("gives every network its own VXLAN identifier, across projects", async () => {
      const rows = await api.services.db.select({ vni: networks.vni }).from(networks);
      expect(new Set(rows.map((r) => r.vni)).size).toBe(rows.length);
      for (const { vni } of rows) expect(vni).toBeGreaterThanOrEqual(4096);
    });

    it("the migration gives a default network to projects that existed before networks", async () => {
      const { db } = api.services;
      await db.delete(networks).where(eq(networks.projectId, other.id));
      const migration = readFileSync(new URL("../../migrations/0006_networks.sql", import.meta.url), "utf8");
      const backfill = migration.split("--> statement-breakpoint").at(-1) as string;
      await db.execute(sql.raw(backfill));
      const list = await api.expectStatus(200, "GET", "/v1/networks", { token: other.token });
      expect(list.items.map((n: { name: string }) => n.name)).toEqual(["default"]);
      expect(list.items[0].id).toMatch(/^net_[0-9a-hjkmnp-tv-z]{26}$/);
      // Run twice (a migration retried), it adds nothing.
      await db.execute(sql.raw(backfill));
      expect(await db.select().from(networks).where(eq(networks.projectId, other.id))).toHaveLength(1);
    });
  });
});
