// An image's versions: listed newest first with where each is held, one version by number, and
// nothing of another project's images.
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { imageReplicas, images, imageVersions } from "../../api/catalog/schema.ts";
import { createTestApi, type TestApi } from "../support/api.ts";
import { CATALOG_KINDS } from "../support/catalogs.ts";

describe.each(CATALOG_KINDS)("image versions (%s)", (kind) => {
  let api: TestApi;
  let acme: Awaited<ReturnType<TestApi["createProject"]>>;
  let other: Awaited<ReturnType<TestApi["createProject"]>>;
  let imageId: string;
  beforeAll(async () => {
    api = await createTestApi(kind);
    await api.createRegion("eu-west");
    await api.createRegion("us-east");
    acme = await api.createProject("acme");
    other = await api.createProject("other");
    const image = await api.expectStatus(201, "POST", "/v1/images", {
      token: acme.token,
      body: { name: "web", origin_region: "eu-west", replicate_to: ["us-east"] },
    });
    imageId = image.id;
    // As the catalog records two uploads: version 1 everywhere, version 2 still reaching us-east.
    const { db } = api.services;
    await db.insert(imageVersions).values([
      { imageId, version: 1, size: 4096, digest: `sha256:${"a1".repeat(32)}`, chunkCount: 1 },
      { imageId, version: 2, size: 8192, digest: `sha256:${"b2".repeat(32)}`, chunkCount: 2 },
    ]);
    await db.update(images).set({ currentVersion: 2, state: "available" }).where(eq(images.id, imageId));
    await db.insert(imageReplicas).values([
      { imageId, version: 1, datacenter: "eu-west-a", state: "available", localId: "eu-1", bytesDone: 4096 },
      { imageId, version: 1, datacenter: "us-east-a", state: "available", localId: "us-1", bytesDone: 4096 },
      { imageId, version: 2, datacenter: "eu-west-a", state: "available", localId: "eu-2", bytesDone: 8192 },
      {
        imageId,
        version: 2,
        datacenter: "us-east-a",
        state: "transferring",
        bytesDone: 2048,
        bytesTotal: 8192,
      },
    ]);
  });
  afterAll(() => api.close());

  const where = (version: { replicas: { datacenter: string; state: string; bytes_done: number }[] }) =>
    version.replicas.map((r) => `${r.datacenter} ${r.state} ${r.bytes_done}`);

  it("lists every version newest first, with its digest, size, whether it is current, and its replicas", async () => {
    const listed = await api.expectStatus(200, "GET", `/v1/images/${imageId}/versions`, {
      token: acme.readToken,
    });
    expect(
      listed.items.map((v: { version: number; current: boolean; size: number }) => [
        v.version,
        v.current,
        v.size,
      ]),
    ).toEqual([
      [2, true, 8192],
      [1, false, 4096],
    ]);
    expect(listed.items[0]).toMatchObject({ digest: `sha256:${"b2".repeat(32)}`, chunk_count: 2 });
    expect(listed.items[0].created_at).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(where(listed.items[0])).toEqual(["eu-west-a available 8192", "us-east-a transferring 2048"]);
    expect(where(listed.items[1])).toEqual(["eu-west-a available 4096", "us-east-a available 4096"]);
    expect(listed.items[0].replicas[1]).toMatchObject({
      region: "us-east",
      reason: "replicate_to",
      bytes_total: 8192,
    });
  });

  it("gets one version by number, as the list shows it", async () => {
    const listed = await api.expectStatus(200, "GET", `/v1/images/${imageId}/versions`, {
      token: acme.token,
    });
    const one = await api.expectStatus(200, "GET", `/v1/images/${imageId}/versions/1`, { token: acme.token });
    expect(one).toEqual(listed.items[1]);
  });

  it("answers 404 for a version the image does not have, and 400 for one that is not a number", async () => {
    const missing = await api.call("GET", `/v1/images/${imageId}/versions/3`, { token: acme.token });
    expect([missing.status, missing.body.code]).toEqual([404, "not_found"]);
    const invalid = await api.call("GET", `/v1/images/${imageId}/versions/latest`, { token: acme.token });
    expect(invalid.status).toBe(400);
    expect(JSON.stringify(invalid.body)).toContain("version");
  });

  it("shows nothing of another project's image: 404 as for one that does not exist", async () => {
    for (const path of [`/v1/images/${imageId}/versions`, `/v1/images/${imageId}/versions/1`]) {
      const answer = await api.call("GET", path, { token: other.token });
      expect([path, answer.status]).toEqual([path, 404]);
    }
  });

  it("lists no versions of an image not uploaded yet", async () => {
    const fresh = await api.expectStatus(201, "POST", "/v1/images", {
      token: acme.token,
      body: { name: "fresh", origin_region: "eu-west" },
    });
    const listed = await api.expectStatus(200, "GET", `/v1/images/${fresh.id}/versions`, {
      token: acme.token,
    });
    expect(listed.items).toEqual([]);
  });
});
