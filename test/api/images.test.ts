import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestApi, type TestApi } from "../support/api.ts";
import { CATALOG_KINDS } from "../support/catalogs.ts";

describe.each(CATALOG_KINDS)("images (%s)", (kind) => {
  let api: TestApi;
  let acme: Awaited<ReturnType<TestApi["createProject"]>>;
  let other: Awaited<ReturnType<TestApi["createProject"]>>;
  beforeAll(async () => {
    api = await createTestApi(kind);
    await api.createRegion("eu-west");
    await api.createRegion("us-east");
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
