// Flow 2 of the orchestrator (replication policy) with real processes: an image whose policy
// names two regions is held there without any VM asking; adding a region replicates to it;
// removing one lets that replica go (the manager deletes its copy and frees its chunks, the
// catalog row goes). A copy made on request and then unused is collected after the idle time,
// policy copies and the origin's never are. Deleting the image removes it from every manager.
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { uploadImage } from "../../client/upload.ts";
import { type Stack, startStack } from "../support/stack.ts";
import { heldBy, stackProbes } from "../support/stack-probes.ts";

const IDLE_SECONDS = 3;
let stack: Stack;
const call: Stack["call"] = (...args) => stack.call(...args);

const { waitForOperation, waitUntil, imageOf, storeHolds } = stackProbes(() => stack, {
  operationTimeoutMs: 120_000,
});

/** Bytes a directory tree takes on disk (allocated blocks: sparse files count what they hold). */
function diskBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    total += entry.isDirectory() ? diskBytes(path) : statSync(path).blocks * 512;
  }
  return total;
}

/** The distribution operation the last change of the image started. */
async function latestOperation(imageId: string, kind: string) {
  const { body } = await call("GET", "/v1/operations?page_size=200", stack.projectToken);
  const mine = body.items.filter((op: any) => op.kind === kind && op.target.id === imageId);
  return mine.at(-1);
}

async function patchImage(id: string, body: unknown) {
  const response = await fetch(`${stack.controlPlane}/v1/images/${id}`, {
    method: "PATCH",
    headers: { authorization: `Bearer ${stack.projectToken}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return {
    status: response.status,
    operation: response.headers.get("x-operation-id"),
    body: await response.json(),
  };
}

beforeAll(async () => {
  stack = await startStack({
    name: "replication",
    regions: ["eu-west", "us-east", "ap-south", "sa-east"],
    replicaIdleSeconds: IDLE_SECONDS,
  });
}, 120_000);

afterAll(() => stack?.stop());

describe("replication policy (flow 2)", () => {
  let imageId = "";

  it("keeps the policy's regions holding the image, follows changes of the policy, and never collects policy copies", async () => {
    const file = join(stack.dir, "base.raw");
    const bytes = Buffer.alloc(8 << 20);
    randomBytes(6 << 20).copy(bytes, 0);
    writeFileSync(file, bytes);
    const created = await call("POST", "/v1/images", stack.projectToken, {
      name: "base",
      origin_region: "eu-west",
      format: "raw",
      replicate_to: ["us-east", "ap-south"],
    });
    expect(created.status).toBe(201);
    imageId = created.body.id;
    await uploadImage({
      path: file,
      managerUrl: created.body.upload.url,
      token: created.body.upload.token,
      imageId,
      version: 1,
      format: "raw",
    });

    // Nobody asked for a VM: the commit itself started the distribution.
    const distribution = await waitUntil("the commit starts a distribution", () =>
      latestOperation(imageId, "distribute-image-version"),
    );
    const distributed = await waitForOperation(distribution.id);
    expect(distributed.state, JSON.stringify(distributed.error)).toBe("succeeded");
    expect(distributed.result.pulled.map((p: any) => p.datacenter)).toEqual(["ap-south-a", "us-east-a"]);
    let image = await imageOf(imageId);
    expect(heldBy(image)).toEqual([
      "ap-south-a@1:available",
      "eu-west-a@1:available",
      "us-east-a@1:available",
    ]);
    expect(new Set(image.replicas.map((r: any) => r.local_id)).size).toBe(3);
    expect(storeHolds("us-east-a", imageId, 1)).toBe(true);
    expect(storeHolds("ap-south-a", imageId, 1)).toBe(true);
    expect(storeHolds("sa-east-a", imageId, 1)).toBe(false);

    // Adding a region replicates to it.
    const added = await patchImage(imageId, { replicate_to: ["us-east", "ap-south", "sa-east"] });
    expect(added.status).toBe(200);
    expect(added.operation).toMatch(/^op/);
    const addition = await waitForOperation(added.operation as string);
    expect(addition.state, JSON.stringify(addition.error)).toBe("succeeded");
    expect(addition.result.pulled.map((p: any) => p.datacenter)).toEqual(["sa-east-a"]);
    image = await imageOf(imageId);
    expect(heldBy(image)).toContain("sa-east-a@1:available");
    expect(storeHolds("sa-east-a", imageId, 1)).toBe(true);

    // Well past the idle time, the policy's copies and the origin's are all still there.
    await sleep((IDLE_SECONDS + 3) * 1000);
    image = await imageOf(imageId);
    expect(heldBy(image)).toEqual([
      "ap-south-a@1:available",
      "eu-west-a@1:available",
      "sa-east-a@1:available",
      "us-east-a@1:available",
    ]);

    // Removing a region lets its copy go: the manager deletes it and frees its chunks.
    const apSouth = image.replicas.find((r: any) => r.datacenter === "ap-south-a");
    const apSouthBytes = diskBytes(join(stack.dir, "ap-south-a", "store"));
    const removed = await patchImage(imageId, { replicate_to: ["us-east", "sa-east"] });
    const removal = await waitForOperation(removed.operation as string);
    expect(removal.state, JSON.stringify(removal.error)).toBe("succeeded");
    expect(removal.result.dropped).toEqual(["ap-south-a@1"]);
    image = await imageOf(imageId);
    expect(heldBy(image)).toEqual([
      "eu-west-a@1:available",
      "sa-east-a@1:available",
      "us-east-a@1:available",
    ]);
    expect(storeHolds("ap-south-a", imageId, 1)).toBe(false);
    expect(existsSync(join(stack.dir, "ap-south-a", "store", "images", `${apSouth.local_id}.img`))).toBe(
      false,
    );
    // The 6 MiB of data are referenced by nothing else there: the disk space is given back.
    const freed = apSouthBytes - diskBytes(join(stack.dir, "ap-south-a", "store"));
    expect(freed).toBeGreaterThanOrEqual(6 << 20);
  }, 300_000);

  it("collects a copy made on request once it is unused for the idle time", async () => {
    const asked = await call("POST", `/v1/images/${imageId}/replicas`, stack.projectToken, {
      region: "ap-south",
    });
    expect(asked.status).toBe(202);
    const replicated = await waitForOperation(asked.body.id);
    expect(replicated).toMatchObject({ state: "succeeded", result: { datacenter: "ap-south-a" } });
    const madeAt = Date.now();
    expect(storeHolds("ap-south-a", imageId, 1)).toBe(true);

    await waitUntil(
      "the unused copy in ap-south is collected",
      async () =>
        (await imageOf(imageId)).replicas.some((r: any) => r.datacenter === "ap-south-a") ? undefined : true,
      60_000,
    );
    // Not before the idle time.
    expect(Date.now() - madeAt).toBeGreaterThanOrEqual(IDLE_SECONDS * 1000 - 500);
    expect(storeHolds("ap-south-a", imageId, 1)).toBe(false);
    expect(heldBy(await imageOf(imageId))).toEqual([
      "eu-west-a@1:available",
      "sa-east-a@1:available",
      "us-east-a@1:available",
    ]);
  }, 180_000);

  it("deletes an unused image from every manager, then the catalog", async () => {
    const removal = await call("DELETE", `/v1/images/${imageId}`, stack.projectToken);
    expect(removal.status).toBe(202);
    expect(removal.body.kind).toBe("delete-image");
    const done = await waitForOperation(removal.body.id);
    expect(done.state, JSON.stringify(done.error)).toBe("succeeded");
    expect(done.result.replicas_removed).toBe(3);
    for (const datacenter of ["eu-west-a", "us-east-a", "ap-south-a", "sa-east-a"]) {
      expect(storeHolds(datacenter, imageId, 1), datacenter).toBe(false);
    }
    expect((await call("GET", `/v1/images/${imageId}`, stack.projectToken)).status).toBe(404);
  }, 120_000);
});
