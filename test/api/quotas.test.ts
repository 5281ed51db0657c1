// Per-project quotas (issue #12, finding 3): bytes stored, images, instances and vCPUs, set by
// an admin per project and enforced by the control plane with 403 quota_exceeded.
import { createLocalJWKSet, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assertWithinQuotas, DEFAULT_QUOTAS, quotaExceeded } from "../../api/catalog/quotas.ts";
import { images } from "../../api/catalog/schema.ts";
import { newId } from "../../api/ids.ts";
import { createTestApi, type TestApi } from "../support/api.ts";
import { CATALOG_KINDS } from "../support/catalogs.ts";

const capacity = { vcpus: 8, memory_mb: 16_384, disk_bytes: 100e9 };
const machine = { vcpus: 2, memory_mb: 256 };
const digest = `sha256:${"ab".repeat(32)}`;

describe("quotaExceeded", () => {
  it("names the first quota a request takes past its limit, and only growth counts", () => {
    const quotas = { storage_bytes: 100, images: 2, instances: 3, vcpus: 4 };
    const usage = { storage_bytes: 90, images: 2, instances: 1, vcpus: 2 };
    expect(quotaExceeded(quotas, usage, { storage_bytes: 10 })).toBeUndefined();
    expect(quotaExceeded(quotas, usage, { storage_bytes: 11 })).toEqual({
      name: "storage_bytes",
      usage: 90,
      limit: 100,
      requested: 11,
    });
    expect(quotaExceeded(quotas, usage, { instances: 2, vcpus: 3 })?.name).toBe("vcpus");
    expect(quotaExceeded(quotas, { ...usage, vcpus: 9 }, { instances: -1, vcpus: -2 })).toBeUndefined();
  });
});

describe.each(CATALOG_KINDS)("project quotas (%s)", (kind) => {
  let api: TestApi;
  let tight: Awaited<ReturnType<TestApi["createProject"]>>;
  let manager: string;
  beforeAll(async () => {
    api = await createTestApi(kind);
    await api.expectStatus(201, "POST", "/v1/regions", { body: { name: "eu-west" } });
    manager = (
      await api.expectStatus(201, "POST", "/v1/manager-credentials", {
        body: { region: "eu-west", datacenter: "eu-west-a" },
      })
    ).secret;
    await api.expectStatus(200, "PUT", "/v1/datacenters/eu-west-a", {
      token: manager,
      body: { region: "eu-west", manager_url: "http://127.0.0.1:9001", capacity },
    });
    tight = await api.createProject("tight");
  });
  afterAll(() => api.close());

  it("has defaults, which an admin sets per project at creation or later, and null restores", async () => {
    const project = await api.expectStatus(200, "GET", `/v1/projects/${tight.id}`, { token: tight.token });
    expect(project.quotas).toEqual(DEFAULT_QUOTAS);
    const created = await api.expectStatus(201, "POST", "/v1/projects", {
      body: { name: "small", quotas: { images: 3 } },
    });
    expect(created.quotas).toEqual({ ...DEFAULT_QUOTAS, images: 3 });
    const refused = await api.call("PATCH", `/v1/projects/${tight.id}`, {
      token: tight.token,
      body: { quotas: { images: 1000 } },
    });
    expect(refused.status).toBe(403);
    const set = await api.expectStatus(200, "PATCH", `/v1/projects/${tight.id}`, {
      body: { quotas: { storage_bytes: 10_000, images: 2, instances: 3, vcpus: 4 } },
    });
    expect(set.quotas).toEqual({ storage_bytes: 10_000, images: 2, instances: 3, vcpus: 4 });
    const restored = await api.expectStatus(200, "PATCH", `/v1/projects/${created.id}`, {
      body: { quotas: { images: null } },
    });
    expect(restored.quotas).toEqual(DEFAULT_QUOTAS);
    const negative = await api.call("PATCH", `/v1/projects/${tight.id}`, { body: { quotas: { vcpus: -1 } } });
    expect(negative.status).toBe(400);
  });

  let imageId: string;
  it("images: one past the quota is refused with 403 quota_exceeded naming it", async () => {
    const first = await api.expectStatus(201, "POST", "/v1/images", {
      token: tight.token,
      body: { name: "one", origin_region: "eu-west" },
    });
    imageId = first.id;
    // The ticket issued with the image allows what the storage quota leaves.
    expect(first.upload.max_bytes).toBe(10_000);
    await api.expectStatus(201, "POST", "/v1/images", {
      token: tight.token,
      body: { name: "two", origin_region: "eu-west" },
    });
    const third = await api.call("POST", "/v1/images", {
      token: tight.token,
      body: { name: "three", origin_region: "eu-west" },
    });
    expect(third.status).toBe(403);
    expect(third.body).toMatchObject({
      code: "quota_exceeded",
      quota: { name: "images", usage: 2, limit: 2, requested: 1 },
    });
    expect(third.body.detail).toMatch(/Quota images exceeded: the project uses 2 of 2/);
  });

  it("storage: a declared size the quota does not cover gets no upload ticket", async () => {
    const tooBig = await api.call("POST", `/v1/images/${imageId}/uploads`, {
      token: tight.token,
      body: { size: 20_000 },
    });
    expect(tooBig.status).toBe(403);
    expect(tooBig.body.quota).toEqual({ name: "storage_bytes", usage: 0, limit: 10_000, requested: 20_000 });

    const ticket = await api.expectStatus(201, "POST", `/v1/images/${imageId}/uploads`, {
      token: tight.token,
      body: { size: 4096 },
    });
    expect(ticket.max_bytes).toBe(4096);
    const jwks = (await api.call("GET", "/.well-known/jwks.json", { token: null })).body;
    const claims = (await jwtVerify(ticket.token, createLocalJWKSet(jwks))).payload;
    expect(claims).toMatchObject({ action: "upload", maxBytes: 4096 });

    await api.expectStatus(204, "PUT", `/v1/datacenters/eu-west-a/replicas/${imageId}/versions/1`, {
      token: manager,
      body: { state: "available", local_id: "eu-local-1", digest, size: 4096, chunk_count: 1 },
    });
    const rest = await api.expectStatus(201, "POST", `/v1/images/${imageId}/uploads`, { token: tight.token });
    expect(rest.max_bytes).toBe(10_000 - 4096);
    const over = await api.call("POST", `/v1/images/${imageId}/uploads`, {
      token: tight.token,
      body: { size: 6000 },
    });
    expect(over.status).toBe(403);
    expect(over.body.quota).toEqual({ name: "storage_bytes", usage: 4096, limit: 10_000, requested: 6000 });
  });

  it("instances and vCPUs: creating or growing a VM group past them is refused; shrinking is not", async () => {
    const create = (name: string, size: number, vcpus = machine.vcpus) =>
      api.call("POST", "/v1/vm-groups", {
        token: tight.token,
        body: { name, image: imageId, region: "eu-west", size, machine: { ...machine, vcpus } },
      });
    const web = await create("web", 2);
    expect(web.status).toBe(202);
    const groupId = web.body.target.id;
    const tooManyVcpus = await create("db", 1, 1);
    expect(tooManyVcpus.status).toBe(403);
    expect(tooManyVcpus.body.quota).toEqual({ name: "vcpus", usage: 4, limit: 4, requested: 1 });
    const grow = await api.call("PATCH", `/v1/vm-groups/${groupId}`, {
      token: tight.token,
      body: { size: 3 },
    });
    expect(grow.status).toBe(403);
    expect(grow.body.quota).toEqual({ name: "vcpus", usage: 4, limit: 4, requested: 2 });

    await api.expectStatus(200, "PATCH", `/v1/projects/${tight.id}`, { body: { quotas: { vcpus: 100 } } });
    const tooManyInstances = await create("db", 2, 1);
    expect(tooManyInstances.status).toBe(403);
    expect(tooManyInstances.body.quota).toEqual({ name: "instances", usage: 2, limit: 3, requested: 2 });
    // Lowered under what the project uses, a quota still lets a group shrink.
    await api.expectStatus(200, "PATCH", `/v1/projects/${tight.id}`, { body: { quotas: { vcpus: 1 } } });
    const shrink = await api.call("PATCH", `/v1/vm-groups/${groupId}`, {
      token: tight.token,
      body: { size: 1 },
    });
    expect(shrink.status).toBe(202);
  });

  it("two concurrent creates do not both slip under a quota", async () => {
    const project = await api.createProject("racy");
    await api.expectStatus(200, "PATCH", `/v1/projects/${project.id}`, { body: { quotas: { images: 1 } } });
    const answers = await Promise.all(
      ["a", "b", "c", "d"].map((name) =>
        api.call("POST", "/v1/images", { token: project.token, body: { name, origin_region: "eu-west" } }),
      ),
    );
    expect(answers.map((a) => a.status).sort()).toEqual([201, 403, 403, 403]);
    const list = await api.expectStatus(200, "GET", "/v1/images", { token: project.token });
    expect(list.items).toHaveLength(1);
  });

  it("a check holds the project until its transaction ends: the second waits and sees the first's insert", async () => {
    const project = await api.createProject("held");
    await api.expectStatus(200, "PATCH", `/v1/projects/${project.id}`, { body: { quotas: { images: 1 } } });
    const { db } = api.services;
    const insert = (tx: typeof db, name: string) =>
      tx
        .insert(images)
        .values({ id: newId("image"), projectId: project.id, name, format: "raw", originRegion: "eu-west" });
    let checked: () => void = () => {};
    const firstChecked = new Promise<void>((resolve) => {
      checked = resolve;
    });
    const first = db.transaction(async (tx) => {
      await assertWithinQuotas(tx, project.id, { images: 1 });
      checked();
      // The second request checks while this one has yet to insert.
      await new Promise((resolve) => setTimeout(resolve, 300));
      await insert(tx, "first");
    });
    await firstChecked;
    const second = db.transaction(async (tx) => {
      await assertWithinQuotas(tx, project.id, { images: 1 });
      await insert(tx, "second");
    });
    const [a, b] = await Promise.allSettled([first, second]);
    expect(a.status).toBe("fulfilled");
    expect(b).toMatchObject({ status: "rejected", reason: { code: "quota_exceeded" } });
  });
});
