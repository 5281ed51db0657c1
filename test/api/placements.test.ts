import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findNetworkByReference } from "../../api/catalog/networks.ts";
import { imageReplicas, images, imageVersions, vmGroups } from "../../api/catalog/schema.ts";
import { newId } from "../../api/ids.ts";
import { createTestApi, type TestApi } from "../support/api.ts";
import { CATALOG_KINDS } from "../support/catalogs.ts";

const MiB = 1024 * 1024;
const capacity = { vcpus: 16, memory_mb: 32_768, disk_bytes: 100e9 };
const machine = { vcpus: 2, memory_mb: 1024 };
const PATH = "/v1/placements:explain";

type Candidate = { datacenter: string; outcome: string; reasons: string[]; transfer_bytes: number };
const byName = (candidates: Candidate[]) => Object.fromEntries(candidates.map((c) => [c.datacenter, c]));

describe.each(CATALOG_KINDS)("placements:explain (%s)", (kind) => {
  let api: TestApi;
  let acme: Awaited<ReturnType<TestApi["createProject"]>>;
  let other: Awaited<ReturnType<TestApi["createProject"]>>;
  let imageId: string;
  let emptyImageId: string;

  async function heartbeat(name: string, free: { vcpus: number; memory_mb: number }) {
    await api.expectStatus(200, "POST", `/v1/datacenters/${name}/heartbeat`, {
      body: {
        manager_url: `http://127.0.0.1:9000/${name}`,
        capacity,
        free: { ...free, disk_bytes: 50e9 },
        chunk_count: 0,
        image_count: 0,
      },
    });
  }

  beforeAll(async () => {
    api = await createTestApi(kind);
    await api.createRegion("eu-west", capacity);
    await api.createRegion("us-east", capacity);
    await api.createRegion("ap-south", capacity); // ap-south-a never sends a heartbeat
    await api.expectStatus(201, "POST", "/v1/datacenters", {
      body: { name: "us-east-b", region: "us-east", capacity },
    });
    await heartbeat("eu-west-a", { vcpus: 12, memory_mb: 20_000 });
    await heartbeat("us-east-a", { vcpus: 2, memory_mb: 20_000 });
    await heartbeat("us-east-b", { vcpus: 8, memory_mb: 20_000 });

    acme = await api.createProject("acme");
    other = await api.createProject("other");
    imageId = (
      await api.expectStatus(201, "POST", "/v1/images", {
        token: acme.token,
        body: { name: "web", origin_region: "eu-west" },
      })
    ).id;
    emptyImageId = (
      await api.expectStatus(201, "POST", "/v1/images", {
        token: acme.token,
        body: { name: "empty", origin_region: "eu-west" },
      })
    ).id;
    const db = api.catalog.db;
    await db.insert(imageVersions).values([
      { imageId, version: 1, size: 32 * MiB, digest: `sha256:${"1".repeat(64)}` },
      { imageId, version: 2, size: 64 * MiB, digest: `sha256:${"2".repeat(64)}` },
    ]);
    await db.update(images).set({ currentVersion: 2, state: "available" }).where(eq(images.id, imageId));
    await db.insert(imageReplicas).values([
      { imageId, version: 1, datacenter: "eu-west-a", state: "available", localId: "eu-1" },
      { imageId, version: 2, datacenter: "us-east-b", state: "available", localId: "us-2" },
      // A replica still arriving does not count as held.
      { imageId, version: 2, datacenter: "us-east-a", state: "transferring" },
    ]);
  });
  afterAll(() => api.close());

  const explain = (body: Record<string, unknown>, token: string | null = acme.token) =>
    api.call("POST", PATH, { token, body: { image: imageId, size: 2, machine, ...body } });

  describe("happy path", () => {
    it("image-locality takes the datacenter holding the version and explains every candidate", async () => {
      const response = await explain({ placement: { regions: ["eu-west", "us-east"] } });
      expect(response.status).toBe(200);
      expect(response.body.decision).toEqual({ datacenter: "us-east-b", region: "us-east" });
      expect(response.body.candidates.map((c: Candidate) => [c.datacenter, c.outcome])).toEqual([
        ["us-east-b", "chosen"],
        ["eu-west-a", "eligible"],
        ["ap-south-a", "refused"],
        ["us-east-a", "refused"],
      ]);
      const all = byName(response.body.candidates);
      expect(all["us-east-b"]).toMatchObject({ transfer_bytes: 0 });
      expect(all["eu-west-a"]).toMatchObject({
        transfer_bytes: 64 * MiB,
        reasons: ["us-east-b won: holds the image version (transfers 0 B vs 64 MiB)"],
      });
      expect(all["us-east-a"]?.reasons).toEqual(["needs 4 vCPUs, has 2 free"]);
      expect(all["us-east-a"]?.transfer_bytes).toBe(64 * MiB);
      expect(all["ap-south-a"]?.reasons).toEqual(["not in allowed regions (eu-west, us-east)"]);
    });

    it("follows a pinned version and answers read tokens; creates nothing", async () => {
      const response = await explain(
        { image_version: 1, placement: { regions: ["eu-west", "us-east"] } },
        acme.readToken,
      );
      expect(response.status).toBe(200);
      expect(response.body.decision).toEqual({ datacenter: "eu-west-a", region: "eu-west" });
      expect(byName(response.body.candidates)["us-east-b"]?.transfer_bytes).toBe(32 * MiB);
      const groups = await api.expectStatus(200, "GET", "/v1/vm-groups", { token: acme.token });
      expect(groups.items).toEqual([]);
      const operations = await api.expectStatus(200, "GET", "/v1/operations", { token: acme.token });
      expect(operations.items).toEqual([]);
    });

    it("an explicit region chooses among its live datacenters with room", async () => {
      const response = await explain({ region: "us-east" });
      expect(response.status).toBe(200);
      expect(response.body.decision).toEqual({ datacenter: "us-east-b", region: "us-east" });
      const all = byName(response.body.candidates);
      expect(all["eu-west-a"]?.reasons).toEqual(["not in the requested region us-east"]);
      expect(all["us-east-a"]?.outcome).toBe("refused");
    });

    it("least-loaded takes the most free vCPUs", async () => {
      const response = await explain({
        placement: { regions: ["eu-west", "us-east"], strategy: "least-loaded" },
      });
      expect(response.status).toBe(200);
      expect(response.body.decision.datacenter).toBe("eu-west-a");
      expect(byName(response.body.candidates)["us-east-b"]?.reasons).toEqual([
        "eu-west-a won: more free vCPUs (12 vs 8)",
      ]);
    });

    it("spread counts the project's groups per region, not other projects'", async () => {
      const policy = { regions: ["eu-west", "us-east"], strategy: "spread" };
      const defaultNetwork = async (projectId: string) =>
        (await findNetworkByReference(api.catalog.db, projectId, "default"))?.id as string;
      const group = async (projectId: string, name: string) => ({
        id: newId("vmGroup"),
        projectId,
        networkId: await defaultNetwork(projectId),
        name,
        imageId,
        region: "us-east",
        size: 3,
        vcpus: 1,
        memoryMb: 256,
      });
      // Another project's load does not matter: locality decides the tie.
      await api.catalog.db.insert(vmGroups).values(await group(other.id, "theirs"));
      const before = await explain({ placement: policy });
      expect(before.body.decision.datacenter).toBe("us-east-b");

      await api.catalog.db.insert(vmGroups).values(await group(acme.id, "ours"));
      const after = await explain({ placement: policy });
      expect(after.status).toBe(200);
      expect(after.body.decision).toEqual({ datacenter: "eu-west-a", region: "eu-west" });
      expect(byName(after.body.candidates)["us-east-b"]?.reasons).toEqual([
        "eu-west-a won: region eu-west has fewer of the project's instances (0 vs 3 in us-east)",
      ]);
    });
  });

  describe("errors", () => {
    it("no candidate is a 422 no_placement with every refusal in the detail and in candidates", async () => {
      const response = await explain({
        placement: { regions: ["eu-west"], conditions: { max_transfer_bytes: 10 * MiB } },
      });
      expect(response.status).toBe(422);
      expect(response.headers.get("content-type")).toContain("application/problem+json");
      expect(response.body).toMatchObject({
        code: "no_placement",
        status: 422,
        errors: [{ path: "placement", message: "no datacenter satisfies it" }],
      });
      expect(response.body.detail).toContain("eu-west-a: would transfer 64 MiB > max 10 MiB");
      expect(response.body.detail).toContain("us-east-a: not in allowed regions (eu-west)");
      expect(byName(response.body.candidates)["eu-west-a"]).toMatchObject({
        outcome: "refused",
        reasons: ["would transfer 64 MiB > max 10 MiB"],
      });
      expect(response.body.candidates).toHaveLength(4);
    });

    it("a region whose datacenters are not up or lack room is a 422 naming region", async () => {
      const silent = await explain({ region: "ap-south" });
      expect(silent.status).toBe(422);
      expect(silent.body.errors).toEqual([{ path: "region", message: "no datacenter satisfies it" }]);
      expect(byName(silent.body.candidates)["ap-south-a"]?.reasons).toEqual([
        "no regional manager registered",
        "status unknown (no heartbeat yet)",
      ]);
      const big = await explain({ region: "eu-west", size: 7 });
      expect(big.status).toBe(422);
      expect(big.body.detail).toContain("eu-west-a: needs 14 vCPUs, has 12 free");
      const minimum = await explain({
        placement: { regions: ["eu-west"], conditions: { min_free_memory_mb: 30_000 } },
      });
      expect(minimum.status).toBe(422);
      expect(minimum.body.detail).toContain("has 20000 MiB free memory < min_free_memory_mb 30000");
    });

    it("unknown image, version and regions are 422s naming the field", async () => {
      const theirs = await explain({ region: "eu-west" }, other.token);
      expect(theirs.status).toBe(422);
      expect(theirs.body).toMatchObject({
        code: "image_not_found",
        errors: [{ path: "image", message: "unknown image" }],
      });
      const version = await explain({ region: "eu-west", image_version: 9 });
      expect(version.status).toBe(422);
      expect(version.body.errors).toEqual([{ path: "image_version", message: "unknown version" }]);
      const region = await explain({ placement: { regions: ["eu-west", "mars"] } });
      expect(region.status).toBe(422);
      expect(region.body.errors).toEqual([{ path: "placement.regions[1]", message: "unknown region mars" }]);
      const empty = await explain({ image: emptyImageId, region: "eu-west" });
      expect(empty.status).toBe(422);
      expect(empty.body).toMatchObject({ code: "image_not_uploaded", errors: [{ path: "image" }] });
    });

    it("malformed bodies are 400s naming the field", async () => {
      const both = await explain({ region: "eu-west", placement: { regions: ["eu-west"] } });
      expect(both.status).toBe(400);
      expect(both.body.errors).toEqual([
        { path: "placement", message: "give exactly one of region and placement" },
      ]);
      const neither = await explain({});
      expect(neither.status).toBe(400);
      expect(neither.body.errors[0].path).toBe("region");
      const strategy = await explain({ placement: { regions: ["eu-west"], strategy: "random" } });
      expect(strategy.status).toBe(400);
      expect(strategy.body.errors[0].path).toBe("placement.strategy");
      const zero = await explain({ region: "eu-west", size: 0 });
      expect(zero.status).toBe(400);
      expect(zero.body.errors[0].path).toBe("size");
      const extra = await explain({ region: "eu-west", name: "web" });
      expect(extra.status).toBe(400);
    });
  });

  describe("security", () => {
    it("needs a project token: none is a 401, an admin token a 403", async () => {
      expect((await explain({ region: "eu-west" }, null)).status).toBe(401);
      const admin = await api.call("POST", PATH, {
        body: { image: imageId, region: "eu-west", size: 1, machine },
      });
      expect(admin.status).toBe(403);
    });

    it("another project cannot learn where an image is held", async () => {
      const response = await explain({ placement: { regions: ["eu-west", "us-east"] } }, other.readToken);
      expect(response.status).toBe(422);
      expect(JSON.stringify(response.body)).not.toContain("us-east-b");
    });
  });
});
