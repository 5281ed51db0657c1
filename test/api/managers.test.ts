// The control plane's side of regional managers: credentials, registration, transfer tokens,
// replica reports and the upload ticket.
import { and, eq } from "drizzle-orm";
import { createLocalJWKSet, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findNetworkByReference } from "../../api/catalog/networks.ts";
import { imageReplicas, instances, vmGroups } from "../../api/catalog/schema.ts";
import { newId } from "../../api/ids.ts";
import { createTestApi, type TestApi } from "../support/api.ts";
import { CATALOG_KINDS } from "../support/catalogs.ts";

const capacity = { vcpus: 8, memory_mb: 16_384, disk_bytes: 100e9 };
const digest = `sha256:${"ab".repeat(32)}`;
const manifestDigest = `sha256:${"ef".repeat(32)}`;

describe.each(CATALOG_KINDS)("regional managers (%s)", (kind) => {
  let api: TestApi;
  let acme: Awaited<ReturnType<TestApi["createProject"]>>;
  let eu: string;
  let us: string;
  beforeAll(async () => {
    api = await createTestApi(kind);
    for (const region of ["eu-west", "us-east"])
      await api.expectStatus(201, "POST", "/v1/regions", { body: { name: region } });
    acme = await api.createProject("acme");
    eu = (
      await api.expectStatus(201, "POST", "/v1/manager-credentials", {
        body: { region: "eu-west", datacenter: "eu-west-a" },
      })
    ).secret;
    us = (
      await api.expectStatus(201, "POST", "/v1/manager-credentials", {
        body: { region: "us-east", datacenter: "us-east-a" },
      })
    ).secret;
    for (const [token, name, region, port] of [
      [eu, "eu-west-a", "eu-west", 9001],
      [us, "us-east-a", "us-east", 9002],
    ] as const) {
      await api.expectStatus(200, "PUT", `/v1/datacenters/${name}`, {
        token,
        body: { region, manager_url: `http://127.0.0.1:${port}`, capacity },
      });
    }
  });
  afterAll(() => api.close());

  /** What the orchestrator records before it asks a manager to pull (see preparePull). */
  const askToPull = (imageId: string, version: number, datacenter: string) =>
    api.services.db.insert(imageReplicas).values({ imageId, version, datacenter, state: "pending" });

  /** An instance of a (catalog-only) VM group booting the version in the datacenter. */
  const bootIn = async (projectId: string, imageId: string, version: number, datacenter: string) => {
    const groupId = newId("vmGroup");
    await api.services.db.insert(vmGroups).values({
      id: groupId,
      projectId,
      name: `g-${groupId.slice(-8)}`,
      imageId,
      networkId: (await findNetworkByReference(api.services.db, projectId, "default"))?.id as string,
      datacenter,
      region: "us-east",
      size: 1,
      vcpus: 1,
      memoryMb: 512,
    });
    const instanceId = newId("instance");
    await api.services.db
      .insert(instances)
      .values({ id: instanceId, vmGroupId: groupId, ordinal: 0, datacenter, imageVersion: version });
    return instanceId;
  };

  /** Commits version `version` of a new image of `owner` in eu-west (the origin manager's report). */
  const committedImage = async (owner: { token: string }, name: string) => {
    const image = await api.expectStatus(201, "POST", "/v1/images", {
      token: owner.token,
      body: { name, origin_region: "eu-west" },
    });
    await api.expectStatus(204, "PUT", `/v1/datacenters/eu-west-a/replicas/${image.id}/versions/1`, {
      token: eu,
      body: { state: "available", local_id: `eu-${name}`, digest, size: 4096 },
    });
    return image.id as string;
  };

  const verify = async (token: string) => {
    const jwks = (await api.call("GET", "/.well-known/jwks.json", { token: null })).body;
    return (await jwtVerify(token, createLocalJWKSet(jwks))).payload;
  };

  describe("happy path", () => {
    it("a manager registers its datacenter, which is then up", async () => {
      const dc = await api.expectStatus(200, "GET", "/v1/datacenters/eu-west-a", { token: acme.token });
      expect(dc).toMatchObject({ region: "eu-west", manager_url: "http://127.0.0.1:9001", status: "up" });
    });

    it("an image upload, commit, and a peer's sources with read tokens", async () => {
      const image = await api.expectStatus(201, "POST", "/v1/images", {
        token: acme.token,
        body: { name: "web", origin_region: "eu-west" },
      });
      expect(image.upload).toMatchObject({
        version: 1,
        datacenter: "eu-west-a",
        url: "http://127.0.0.1:9001",
      });
      expect(await verify(image.upload.token)).toMatchObject({
        imageId: image.id,
        version: 1,
        datacenter: "eu-west-a",
        action: "upload",
      });

      await api.expectStatus(204, "PUT", `/v1/datacenters/eu-west-a/replicas/${image.id}/versions/1`, {
        token: eu,
        body: {
          state: "available",
          local_id: "eu-local-1",
          digest,
          manifest_digest: manifestDigest,
          size: 4096,
          chunk_count: 1,
        },
      });
      const committed = await api.expectStatus(200, "GET", `/v1/images/${image.id}`, { token: acme.token });
      expect(committed).toMatchObject({ state: "available", version: 1, digest, size: 4096 });
      expect(committed.replicas).toMatchObject([
        { datacenter: "eu-west-a", local_id: "eu-local-1", state: "available" },
      ]);

      // The orchestrator asks us-east-a to pull it (it records the replica it asked for first).
      await askToPull(image.id, 1, "us-east-a");
      const sources = await api.expectStatus(200, "GET", `/v1/images/${image.id}/versions/1/sources`, {
        token: us,
      });
      expect(sources).toMatchObject({
        project_id: acme.id,
        digest,
        // What the pulling manager checks the manifest it is sent against.
        manifest_digest: manifestDigest,
        size: 4096,
        sources: [{ datacenter: "eu-west-a", url: "http://127.0.0.1:9001" }],
      });
      expect(await verify(sources.sources[0].token)).toMatchObject({
        datacenter: "eu-west-a",
        action: "read",
      });

      await api.expectStatus(204, "PUT", `/v1/datacenters/us-east-a/replicas/${image.id}/versions/1`, {
        token: us,
        body: { state: "transferring", bytes_done: 1024, bytes_total: 4096 },
      });
      const otherManifest = await api.call(
        "PUT",
        `/v1/datacenters/us-east-a/replicas/${image.id}/versions/1`,
        {
          token: us,
          body: {
            state: "available",
            local_id: "us-local-9",
            digest,
            manifest_digest: `sha256:${"01".repeat(32)}`,
            size: 4096,
          },
        },
      );
      expect([otherManifest.status, otherManifest.body.code]).toEqual([409, "manifest_digest_mismatch"]);
      await api.expectStatus(204, "PUT", `/v1/datacenters/us-east-a/replicas/${image.id}/versions/1`, {
        token: us,
        body: {
          state: "available",
          local_id: "us-local-9",
          digest,
          manifest_digest: manifestDigest,
          size: 4096,
        },
      });
      // A late progress report never takes an available replica back.
      await api.expectStatus(204, "PUT", `/v1/datacenters/us-east-a/replicas/${image.id}/versions/1`, {
        token: us,
        body: { state: "transferring", bytes_done: 2048 },
      });
      const replicated = await api.expectStatus(200, "GET", `/v1/images/${image.id}`, { token: acme.token });
      expect(replicated.replicas.map((r: any) => [r.datacenter, r.local_id, r.state])).toEqual([
        ["eu-west-a", "eu-local-1", "available"],
        ["us-east-a", "us-local-9", "available"],
      ]);

      const next = await api.expectStatus(201, "POST", `/v1/images/${image.id}/uploads`, {
        token: acme.token,
      });
      expect(next.version).toBe(2);
    });
    it("replica bytes add up: of the whole version, done never past total, an older manager's resumed pull too", async () => {
      const imageId = await committedImage(acme, "progress");
      await askToPull(imageId, 1, "us-east-a");
      const report = (body: Record<string, unknown>) =>
        api.expectStatus(204, "PUT", `/v1/datacenters/us-east-a/replicas/${imageId}/versions/1`, {
          token: us,
          body,
        });
      const bytesOf = async () => {
        const image = await api.expectStatus(200, "GET", `/v1/images/${imageId}`, { token: acme.token });
        return Object.fromEntries(
          image.replicas.map((r: any) => [r.datacenter, [r.state, r.bytes_done, r.bytes_total]]),
        );
      };
      const received = async () => {
        const [row] = await api.services.db
          .select({ bytes: imageReplicas.bytesReceived })
          .from(imageReplicas)
          .where(and(eq(imageReplicas.imageId, imageId), eq(imageReplicas.datacenter, "us-east-a")));
        return row?.bytes;
      };
      // The origin's commit says nothing of bytes: it holds the whole version.
      expect((await bytesOf())["eu-west-a"]).toEqual(["available", 4096, 4096]);

      // An older manager counts only what was missing when its pull began: 3072 of 4096, then
      // resumed with 1024 missing (3072/1024 before). Recorded as the rest of the version.
      await report({ state: "transferring", bytes_done: 3072, bytes_total: 4096 });
      expect((await bytesOf())["us-east-a"]).toEqual(["transferring", 3072, 4096]);
      await report({ state: "transferring", bytes_done: 0, bytes_total: 1024 });
      expect((await bytesOf())["us-east-a"]).toEqual(["transferring", 3072, 4096]);
      await report({ state: "transferring", bytes_done: 512, bytes_total: 1024 });
      expect((await bytesOf())["us-east-a"]).toEqual(["transferring", 3584, 4096]);
      expect(await received()).toBe(512);
      // Nothing reported past the total is stored past it.
      await report({ state: "transferring", bytes_done: 9000, bytes_total: 4096, bytes_received: 9000 });
      expect((await bytesOf())["us-east-a"]).toEqual(["transferring", 4096, 4096]);
      // A manager of the whole version; available holds all of it, what the pull fetched kept apart.
      await report({ state: "transferring", bytes_done: 3584, bytes_total: 4096, bytes_received: 512 });
      expect((await bytesOf())["us-east-a"]).toEqual(["transferring", 3584, 4096]);
      await report({
        state: "available",
        local_id: "us-progress",
        digest,
        size: 4096,
        bytes_done: 4096,
        bytes_total: 4096,
        bytes_received: 1024,
      });
      expect((await bytesOf())["us-east-a"]).toEqual(["available", 4096, 4096]);
      expect(await received()).toBe(1024);
    });
  });

  describe("errors", () => {
    it("refuses a commit from outside the origin region, a wrong digest and an incomplete report", async () => {
      const image = await api.expectStatus(201, "POST", "/v1/images", {
        token: acme.token,
        body: { name: "guarded", origin_region: "eu-west" },
      });
      const foreign = await api.call("PUT", `/v1/datacenters/us-east-a/replicas/${image.id}/versions/1`, {
        token: us,
        body: { state: "available", local_id: "x", digest, size: 1 },
      });
      // Outside the origin region, a version not committed yet is one that does not exist.
      expect([foreign.status, foreign.body.code]).toEqual([404, "not_found"]);
      await api.expectStatus(204, "PUT", `/v1/datacenters/eu-west-a/replicas/${image.id}/versions/1`, {
        token: eu,
        body: { state: "available", local_id: "g1", digest, size: 1 },
      });
      await askToPull(image.id, 1, "us-east-a");
      const mismatch = await api.call("PUT", `/v1/datacenters/us-east-a/replicas/${image.id}/versions/1`, {
        token: us,
        body: { state: "available", local_id: "x", digest: `sha256:${"cd".repeat(32)}`, size: 1 },
      });
      expect([mismatch.status, mismatch.body.code]).toEqual([409, "digest_mismatch"]);
      // A version committed without a manifest digest (before it existed) is pulled as before:
      // its sources name none, and the puller hashes the whole image.
      const sources = await api.expectStatus(200, "GET", `/v1/images/${image.id}/versions/1/sources`, {
        token: us,
      });
      expect(sources).not.toHaveProperty("manifest_digest");
      const wrongSize = await api.call("PUT", `/v1/datacenters/us-east-a/replicas/${image.id}/versions/1`, {
        token: us,
        body: { state: "available", local_id: "x", digest, size: 2 },
      });
      expect([wrongSize.status, wrongSize.body.code]).toEqual([409, "size_mismatch"]);
      const incomplete = await api.call("PUT", `/v1/datacenters/us-east-a/replicas/${image.id}/versions/1`, {
        token: us,
        body: { state: "available" },
      });
      expect(incomplete.status).toBe(400);
      expect(incomplete.body.errors.map((e: any) => e.path)).toEqual(["local_id", "digest", "size"]);
    });

    it("a manager credential needs a known region, and a datacenter of that region", async () => {
      const unknown = await api.call("POST", "/v1/manager-credentials", {
        body: { region: "mars", datacenter: "mars-a" },
      });
      expect([unknown.status, unknown.body.code]).toEqual([422, "region_not_found"]);
      expect(unknown.body.errors.map((e: { path: string }) => e.path)).toEqual(["region"]);
      const elsewhere = await api.call("POST", "/v1/manager-credentials", {
        body: { region: "us-east", datacenter: "eu-west-a" },
      });
      expect([elsewhere.status, elsewhere.body.code]).toEqual([409, "datacenter_in_other_region"]);
      const bad = await api.call("POST", "/v1/manager-credentials", {
        body: { region: "eu-west", datacenter: "EU West" },
      });
      expect(bad.status).toBe(400);
      expect(bad.body.errors.map((e: { path: string }) => e.path)).toEqual(["datacenter"]);
    });

    it("an upload needs a live manager in the origin region", async () => {
      await api.expectStatus(201, "POST", "/v1/regions", { body: { name: "ap-south" } });
      const image = await api.expectStatus(201, "POST", "/v1/images", {
        token: acme.token,
        body: { name: "lonely", origin_region: "ap-south" },
      });
      expect(image.upload).toBeNull();
      const upload = await api.call("POST", `/v1/images/${image.id}/uploads`, { token: acme.token });
      expect([upload.status, upload.body.code]).toEqual([409, "origin_unavailable"]);
    });
  });

  describe("replicas asked for", () => {
    it("a region's live datacenter is asked to hold the current version, by an operation", async () => {
      const imageId = await committedImage(acme, "wanted");
      const asked = await api.expectStatus(202, "POST", `/v1/images/${imageId}/replicas`, {
        token: acme.token,
        body: { region: "us-east" },
      });
      expect(asked).toMatchObject({
        kind: "replicate-image",
        state: "pending",
        target: { type: "image", id: imageId },
        progress: { step: "transferring-image", bytes_total: 4096 },
      });
      const image = await api.expectStatus(200, "GET", `/v1/images/${imageId}`, { token: acme.token });
      expect(image.replicas.map((r: any) => [r.datacenter, r.state])).toEqual([
        ["eu-west-a", "available"],
        ["us-east-a", "pending"],
      ]);
    });

    it("nothing uploaded is a 409; an unknown image a 404; a region unknown or with no live manager a 422", async () => {
      const empty = await api.expectStatus(201, "POST", "/v1/images", {
        token: acme.token,
        body: { name: "not-yet", origin_region: "eu-west" },
      });
      const notYet = await api.call("POST", `/v1/images/${empty.id}/replicas`, {
        token: acme.token,
        body: { region: "us-east" },
      });
      expect([notYet.status, notYet.body.code]).toEqual([409, "image_not_uploaded"]);
      const unknown = await api.call("POST", `/v1/images/${newId("image")}/replicas`, {
        token: acme.token,
        body: { region: "us-east" },
      });
      expect([unknown.status, unknown.body.code]).toEqual([404, "not_found"]);

      const imageId = await committedImage(acme, "nowhere-to-go");
      await api.expectStatus(201, "POST", "/v1/regions", { body: { name: "sa-east" } });
      for (const [region, code] of [
        ["mars", "region_not_found"],
        ["sa-east", "no_datacenter_up"],
      ]) {
        const refused = await api.call("POST", `/v1/images/${imageId}/replicas`, {
          token: acme.token,
          body: { region },
        });
        expect([refused.status, refused.body.code], region).toEqual([422, code]);
        expect(refused.body.errors.map((e: { path: string }) => e.path)).toEqual(["region"]);
      }
      const version = await api.call("POST", `/v1/images/${imageId}/replicas`, {
        token: acme.token,
        body: { region: "us-east", version: 5 },
      });
      expect([version.status, version.body.errors?.[0]?.path]).toEqual([422, "version"]);
      const image = await api.expectStatus(200, "GET", `/v1/images/${imageId}`, { token: acme.token });
      expect(image.replicas.map((r: any) => r.datacenter)).toEqual(["eu-west-a"]);
    });
  });

  describe("instance reports", () => {
    it("a manager reports an instance of its datacenter, which its project then sees", async () => {
      const imageId = await committedImage(acme, "reported");
      const instanceId = await bootIn(acme.id, imageId, 1, "us-east-a");
      await api.expectStatus(204, "PUT", `/v1/datacenters/us-east-a/instances/${instanceId}`, {
        token: us,
        body: { state: "running", local_id: instanceId, boot_log_tail: "booted" },
      });
      const seen = await api.expectStatus(200, "GET", `/v1/instances/${instanceId}`, { token: acme.token });
      expect(seen).toMatchObject({ state: "running", local_id: instanceId, boot_log_tail: "booted" });
    });

    it("an unknown instance is a 404 and an unknown state a 400 naming it; neither changes anything", async () => {
      const imageId = await committedImage(acme, "misreported");
      const instanceId = await bootIn(acme.id, imageId, 1, "us-east-a");
      const before = await api.expectStatus(200, "GET", `/v1/instances/${instanceId}`, { token: acme.token });
      const unknown = await api.call("PUT", `/v1/datacenters/us-east-a/instances/${newId("instance")}`, {
        token: us,
        body: { state: "running" },
      });
      expect([unknown.status, unknown.body.code]).toEqual([404, "not_found"]);
      const bad = await api.call("PUT", `/v1/datacenters/us-east-a/instances/${instanceId}`, {
        token: us,
        body: { state: "dancing" },
      });
      expect(bad.status).toBe(400);
      expect(bad.body.errors.map((e: { path: string }) => e.path)).toEqual(["state"]);
      expect(
        await api.expectStatus(200, "GET", `/v1/instances/${instanceId}`, { token: acme.token }),
      ).toEqual(before);
    });
  });

  describe("security", () => {
    it("a manager credential speaks for its own datacenter only, and is no user token", async () => {
      const other = await api.call("PUT", "/v1/datacenters/us-east-a", {
        token: eu,
        body: { region: "us-east", manager_url: "http://127.0.0.1:9", capacity },
      });
      expect(other.status).toBe(403);
      const wrongRegion = await api.call("PUT", "/v1/datacenters/eu-west-a", {
        token: eu,
        body: { region: "us-east", manager_url: "http://127.0.0.1:9", capacity },
      });
      expect([wrongRegion.status, wrongRegion.body.errors[0].path]).toEqual([400, "region"]);
      expect((await api.call("GET", "/v1/images", { token: eu })).status).toBe(403);
      expect((await api.call("GET", "/v1/regions", { token: eu })).status).toBe(403);
    });

    it("a manager gets sources only for a version its datacenter pulls or boots", async () => {
      const other = await api.createProject("other-sources");
      const imageId = await committedImage(other, "theirs");
      const sourcesOf = (id: string, version: number) =>
        api.call("GET", `/v1/images/${id}/versions/${version}/sources`, { token: us });
      const refused = await sourcesOf(imageId, 1);
      const absent = await sourcesOf(imageId, 9);
      // Another project's image looks like one that does not exist: same status, code, wording.
      expect([refused.status, refused.body.code]).toEqual([404, "not_found"]);
      expect(refused.body.detail).toBe(`image version ${imageId}@1 does not exist`);
      expect([absent.status, absent.body.code]).toEqual([404, "not_found"]);

      // A progress report cannot make up the business it lacks (it would create a replica row).
      const made = await api.call("PUT", `/v1/datacenters/us-east-a/replicas/${imageId}/versions/1`, {
        token: us,
        body: { state: "transferring", bytes_done: 0 },
      });
      expect([made.status, made.body.code]).toEqual([404, "not_found"]);
      expect((await sourcesOf(imageId, 1)).status).toBe(404);

      // An instance placed in us-east-a boots it: its manager pulls it on demand.
      await bootIn(other.id, imageId, 1, "us-east-a");
      const booting = await sourcesOf(imageId, 1);
      expect(booting.status).toBe(200);
      expect(booting.body.sources.map((s: any) => s.datacenter)).toEqual(["eu-west-a"]);
      await api.expectStatus(204, "PUT", `/v1/datacenters/us-east-a/replicas/${imageId}/versions/1`, {
        token: us,
        body: { state: "transferring", bytes_done: 0 },
      });
      // Still only that version.
      expect((await sourcesOf(imageId, 2)).status).toBe(404);
    });

    it("replica reports only for existing versions, in order, with the recorded digest and size", async () => {
      const imageId = await committedImage(acme, "ordered");
      const report = (datacenter: string, token: string, version: number, body: Record<string, unknown>) =>
        api.call("PUT", `/v1/datacenters/${datacenter}/replicas/${imageId}/versions/${version}`, {
          token,
          body,
        });
      const available = { state: "available", local_id: "eu-next", digest, size: 4096 };
      // The gap, from version 1 to 7, even from the origin region.
      const gap = await report("eu-west-a", eu, 7, available);
      expect([gap.status, gap.body.code]).toEqual([409, "version_out_of_order"]);
      expect(gap.body.detail).toContain("version 2 next");
      const progress = await report("eu-west-a", eu, 2, { state: "transferring" });
      expect([progress.status, progress.body.code]).toEqual([409, "version_unknown"]);
      // Another datacenter's name in the path needs that datacenter's credential.
      expect((await report("eu-west-a", us, 2, available)).status).toBe(403);
      // The origin re-reports what it holds; the size must be the one recorded.
      await api.expectStatus(204, "PUT", `/v1/datacenters/eu-west-a/replicas/${imageId}/versions/1`, {
        token: eu,
        body: { state: "available", local_id: "eu-ordered", digest, size: 4096 },
      });
      const wrongSize = await report("eu-west-a", eu, 1, { ...available, size: 1 << 30 });
      expect([wrongSize.status, wrongSize.body.code]).toEqual([409, "size_mismatch"]);
      await api.expectStatus(204, "PUT", `/v1/datacenters/eu-west-a/replicas/${imageId}/versions/2`, {
        token: eu,
        body: available,
      });
      const image = await api.expectStatus(200, "GET", `/v1/images/${imageId}`, { token: acme.token });
      expect(image).toMatchObject({ version: 2, size: 4096 });
    });

    it("project tokens cannot report replicas, ask for sources or issue credentials", async () => {
      const image = await api.expectStatus(201, "POST", "/v1/images", {
        token: acme.token,
        body: { name: "sneaky", origin_region: "eu-west" },
      });
      const report = await api.call("PUT", `/v1/datacenters/eu-west-a/replicas/${image.id}/versions/1`, {
        token: acme.token,
        body: { state: "available", local_id: "x", digest, size: 1 },
      });
      expect(report.status).toBe(403);
      expect(
        (await api.call("GET", `/v1/images/${image.id}/versions/1/sources`, { token: acme.token })).status,
      ).toBe(403);
      const credential = await api.call("POST", "/v1/manager-credentials", {
        token: acme.token,
        body: { region: "eu-west", datacenter: "eu-west-b" },
      });
      expect(credential.status).toBe(403);
    });
  });
});
