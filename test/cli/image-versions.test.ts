// globalvm image versions against a control plane served on loopback (real HTTP, real catalog).
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { imageReplicas, images, imageVersions } from "../../api/catalog/schema.ts";
import { createTestApi, serveOnLoopback, type TestApi } from "../support/api.ts";
import { runCli } from "../support/cli.ts";

let api: TestApi;
let server: Awaited<ReturnType<typeof serveOnLoopback>>;
let env: Record<string, string>;

beforeAll(async () => {
  api = await createTestApi("pglite");
  await api.createRegion("eu-west");
  await api.createRegion("us-east");
  const project = await api.createProject("acme");
  const image = await api.expectStatus(201, "POST", "/v1/images", {
    token: project.token,
    body: { name: "web", origin_region: "eu-west" },
  });
  await api.expectStatus(201, "POST", "/v1/images", {
    token: project.token,
    body: { name: "empty", origin_region: "eu-west" },
  });
  const { db } = api.services;
  await db.insert(imageVersions).values([
    { imageId: image.id, version: 1, size: 1 << 20, digest: `sha256:${"a1".repeat(32)}` },
    { imageId: image.id, version: 2, size: 2 << 20, digest: `sha256:${"b2".repeat(32)}` },
  ]);
  await db.update(images).set({ currentVersion: 2, state: "available" }).where(eq(images.id, image.id));
  await db.insert(imageReplicas).values([
    { imageId: image.id, version: 1, datacenter: "eu-west-a", state: "available" },
    { imageId: image.id, version: 2, datacenter: "eu-west-a", state: "available" },
    {
      imageId: image.id,
      version: 2,
      datacenter: "us-east-a",
      state: "transferring",
      bytesDone: 1 << 19,
      bytesTotal: 2 << 20,
      onDemand: true,
    },
  ]);
  server = await serveOnLoopback(api);
  env = { GLOBALVM_ENDPOINT: server.url, GLOBALVM_TOKEN: project.readToken };
});

afterAll(async () => {
  await server?.close();
  await api?.close();
});

describe("globalvm image versions", () => {
  it("lists the versions newest first: the current one, sizes, digests and where each is held", async () => {
    const result = await runCli(["image", "versions", "web"], env);
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^VERSION\s+CURRENT\s+STATE\s+SIZE\s+DIGEST\s+CREATED\s+REPLICAS$/);
    expect(lines[1]).toMatch(
      /^2\s+yes\s+active\s+2\.0 MiB\s+sha256:b2b2b2b2b2b2\s+\S+\s+eu-west-a:available,us-east-a:transferring 25%$/,
    );
    expect(lines[2]).toMatch(/^1\s+active\s+1\.0 MiB\s+sha256:a1a1a1a1a1a1\s+\S+\s+eu-west-a:available$/);
    expect(lines).toHaveLength(3);
  });

  it("answers JSON with --json, and says so for an image with no version", async () => {
    const json = await runCli(["image", "versions", "web", "--json"], env);
    expect(JSON.parse(json.stdout).items.map((v: { version: number }) => v.version)).toEqual([2, 1]);
    const empty = await runCli(["image", "versions", "empty"], env);
    expect(empty.code, empty.stderr).toBe(0);
    expect(empty.stdout).toContain("image empty has no version yet");
  });

  it("fails with exit 1 for an unknown image and says where to look", async () => {
    const result = await runCli(["image", "versions", "nope"], env);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("no image nope in this project");
  });
});
