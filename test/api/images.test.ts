import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { replicaReason } from "../../api/catalog/mappers.ts";
import { imageReplicas, images, imageVersions } from "../../api/catalog/schema.ts";
import { createTestApi, type TestApi } from "../support/api.ts";
import { CATALOG_KINDS } from "../support/catalogs.ts";

describe("replicaReason", () => {
  const image = { originRegion: "eu-west", replicateTo: ["us-east"] };
  it("is on_demand for a copy made on demand, wherever it is", () => {
    for (const region of ["eu-west", "us-east", "ap-south"])
      expect(replicaReason({ region, onDemand: true }, image), region).toBe("on_demand");
  });
  it("is origin in the origin region, replicate_to in a policy region, on_demand elsewhere", () => {
    expect(replicaReason({ region: "eu-west", onDemand: false }, image)).toBe("origin");
    expect(replicaReason({ region: "us-east", onDemand: false }, image)).toBe("replicate_to");
    // A policy copy the policy no longer names (kept while a VM group uses it).
    expect(replicaReason({ region: "ap-south", onDemand: false }, image)).toBe("on_demand");
    // The origin region named in replicate_to too is still the origin.
    expect(
      replicaReason({ region: "eu-west", onDemand: false }, { ...image, replicateTo: ["eu-west"] }),
    ).toBe("origin");
  });
});

describe.each(CATALOG_KINDS)("images (%s)", (kind) => {
  let api: TestApi;
  let acme: Awaited<ReturnType<TestApi["createProject"]>>;
  let other: Awaited<ReturnType<TestApi["createProject"]>>;
  beforeAll(async () => {
    api = await createTestApi(kind);
    await api.createRegion("eu-west");
    await api.createRegion("us-east");
    await api.createRegion("ap-south");
    await api.expectStatus(201, "POST", "/v1/datacenters", {
      body: {
        name: "eu-west-b",
        region: "eu-west",
        capacity: { vcpus: 8, memory_mb: 16_384, disk_bytes: 100e9 },
      },
    });
    acme = await api.createProject("acme");
    other = await api.createProject("other");
  });
  afterAll(() => api.close());

  describe("happy path", () => {
    it("creates, gets, lists, updates and deletes an image record", async () => {
      const image = await api.expectStatus(201, "POST", "/v1/images", {
        token: acme.token,
        body: {
          name: "web",
          origin_region: "eu-west",
          replicate_to: ["us-east"],
          labels: { team: "platform" },
        },
      });
      expect(image).toMatchObject({
        name: "web",
        format: "qcow2",
        state: "awaiting-upload",
        version: null,
        replicate_to: ["us-east"],
        labels: { team: "platform" },
        replicas: [],
      });
      const { upload, ...record } = image;
      expect(upload).toBeNull();
      expect(await api.expectStatus(200, "GET", `/v1/images/${image.id}`, { token: acme.readToken })).toEqual(
        record,
      );
      const byName = await api.expectStatus(200, "GET", "/v1/images?name=web", { token: acme.token });
      expect(byName.items.map((i: { id: string }) => i.id)).toEqual([image.id]);

      const updated = await api.expectStatus(200, "PATCH", `/v1/images/${image.id}`, {
        token: acme.token,
        body: { replicate_to: [], labels: { team: "web" } },
      });
      expect(updated).toMatchObject({ replicate_to: [], labels: { team: "web" } });

      const operation = await api.expectStatus(202, "DELETE", `/v1/images/${image.id}`, {
        token: acme.token,
      });
      expect(operation).toMatchObject({ kind: "delete-image", state: "succeeded", done: true });
      expect((await api.call("GET", `/v1/images/${image.id}`, { token: acme.token })).status).toBe(404);
    });
  });

  describe("replicas", () => {
    it("say why each exists: origin, replicate_to or on_demand, as the policy changes", async () => {
      const image = await api.expectStatus(201, "POST", "/v1/images", {
        token: acme.token,
        body: { name: "reasons", origin_region: "eu-west", replicate_to: ["us-east"] },
      });
      // As the catalog records them: version 1 committed at the origin, the policy's copy in
      // us-east, copies VM groups needed in ap-south and in the origin region's other datacenter.
      const { db } = api.services;
      await db
        .insert(imageVersions)
        .values({ imageId: image.id, version: 1, size: 4096, digest: `sha256:${"ab".repeat(32)}` });
      await db.update(images).set({ currentVersion: 1, state: "available" }).where(eq(images.id, image.id));
      await db.insert(imageReplicas).values([
        { imageId: image.id, version: 1, datacenter: "eu-west-a", state: "available", localId: "eu-1" },
        { imageId: image.id, version: 1, datacenter: "us-east-a", state: "available", localId: "us-1" },
        { imageId: image.id, version: 1, datacenter: "ap-south-a", state: "pending", onDemand: true },
        { imageId: image.id, version: 1, datacenter: "eu-west-b", state: "available", onDemand: true },
      ]);
      const reasons = (body: { replicas: { datacenter: string; reason: string }[] }) =>
        Object.fromEntries(body.replicas.map((r) => [r.datacenter, r.reason]));
      const read = await api.expectStatus(200, "GET", `/v1/images/${image.id}`, { token: acme.readToken });
      expect(reasons(read)).toEqual({
        "ap-south-a": "on_demand",
        "eu-west-a": "origin",
        "eu-west-b": "on_demand",
        "us-east-a": "replicate_to",
      });
      const listed = await api.expectStatus(200, "GET", "/v1/images?name=reasons", { token: acme.token });
      expect(listed.items[0].replicas).toEqual(read.replicas);

      // Once the policy names ap-south instead, us-east's copy is no longer the policy's (it
      // goes, or stays while a group uses it) and ap-south's stays on demand until the
      // distribution adopts it.
      const updated = await api.expectStatus(200, "PATCH", `/v1/images/${image.id}`, {
        token: acme.token,
        body: { replicate_to: ["ap-south"] },
      });
      expect(reasons(updated)).toEqual({
        "ap-south-a": "on_demand",
        "eu-west-a": "origin",
        "eu-west-b": "on_demand",
        "us-east-a": "on_demand",
      });
      await db
        .update(imageReplicas)
        .set({ onDemand: false })
        .where(eq(imageReplicas.datacenter, "ap-south-a"));
      const adopted = await api.expectStatus(200, "GET", `/v1/images/${image.id}`, { token: acme.token });
      expect(reasons(adopted)["ap-south-a"]).toBe("replicate_to");
    });
  });

  describe("errors", () => {
    it("names each unknown region and leaves nothing behind", async () => {
      const response = await api.call("POST", "/v1/images", {
        token: acme.token,
        body: { name: "ghost", origin_region: "mars", replicate_to: ["us-east", "venus"] },
      });
      expect(response.status).toBe(422);
      expect(response.body.errors.map((e: { path: string }) => e.path)).toEqual([
        "origin_region",
        "replicate_to[1]",
      ]);
      const list = await api.expectStatus(200, "GET", "/v1/images?name=ghost", { token: acme.token });
      expect(list.items).toEqual([]);
    });

    it("rejects bad formats, duplicate regions, unknown fields and duplicate names", async () => {
      const bad = await api.call("POST", "/v1/images", {
        token: acme.token,
        body: {
          name: "x",
          origin_region: "eu-west",
          format: "vmdk",
          replicate_to: ["us-east", "us-east"],
          size: 1,
        },
      });
      expect(bad.status).toBe(400);
      expect(bad.body.errors.map((e: { path: string }) => e.path).sort()).toEqual([
        "format",
        "replicate_to",
        "size",
      ]);
      await api.expectStatus(201, "POST", "/v1/images", {
        token: acme.token,
        body: { name: "twice", origin_region: "eu-west" },
      });
      const dup = await api.call("POST", "/v1/images", {
        token: acme.token,
        body: { name: "twice", origin_region: "eu-west" },
      });
      expect(dup.status).toBe(409);
      // Another project may use the same name.
      await api.expectStatus(201, "POST", "/v1/images", {
        token: other.token,
        body: { name: "twice", origin_region: "eu-west" },
      });
    });

    it("an empty update and a bad image ID are 400s", async () => {
      const image = await api.expectStatus(201, "POST", "/v1/images", {
        token: acme.token,
        body: { name: "empty-update", origin_region: "eu-west" },
      });
      expect(
        (await api.call("PATCH", `/v1/images/${image.id}`, { token: acme.token, body: {} })).status,
      ).toBe(400);
      const badId = await api.call("GET", "/v1/images/img_..%2F..", { token: acme.token });
      expect(badId.status).toBe(400);
      expect(badId.body.errors[0].path).toBe("id");
    });
  });

  describe("security", () => {
    it("another project's image is a 404 for every verb", async () => {
      const image = await api.expectStatus(201, "POST", "/v1/images", {
        token: acme.token,
        body: { name: "private", origin_region: "eu-west" },
      });
      for (const [method, body] of [["GET"], ["PATCH", { labels: {} }], ["DELETE"]] as const) {
        const response = await api.call(method, `/v1/images/${image.id}`, { token: other.token, body });
        expect(response.status, method).toBe(404);
      }
      const list = await api.expectStatus(200, "GET", "/v1/images", { token: other.token });
      expect(list.items.map((i: { id: string }) => i.id)).not.toContain(image.id);
    });

    it("another project's image is a 404 even to a change naming an unknown region", async () => {
      const image = await api.expectStatus(201, "POST", "/v1/images", {
        token: acme.token,
        body: { name: "private-policy", origin_region: "eu-west" },
      });
      const response = await api.call("PATCH", `/v1/images/${image.id}`, {
        token: other.token,
        body: { replicate_to: ["mars"] },
      });
      expect([response.status, response.body.code]).toEqual([404, "not_found"]);
    });

    it("a read-only token reads but cannot write; an admin token has no project", async () => {
      const created = await api.call("POST", "/v1/images", {
        token: acme.readToken,
        body: { name: "ro", origin_region: "eu-west" },
      });
      expect(created.status).toBe(403);
      expect((await api.call("GET", "/v1/images", { token: acme.readToken })).status).toBe(200);
      expect((await api.call("GET", "/v1/images")).status).toBe(403);
    });
  });
});
