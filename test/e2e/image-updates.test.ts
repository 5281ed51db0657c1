// Flow 3's distribution half with real processes and a real guest: a new version of an image
// moves to every datacenter holding an older one, and only its new chunks cross the network
// (measured on the wire by the pulling managers); a datacenter keeps the old version while a
// VM group pinned to it runs, and lets it go once the group is gone (a copy made on demand,
// collected after the idle time). An image a group uses cannot be deleted (409 naming it).
import { randomBytes } from "node:crypto";
import { closeSync, copyFileSync, openSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { uploadImage } from "../../client/upload.ts";
import { ensureGuestImage } from "../support/compute.ts";
import { type Stack, startStack } from "../support/stack.ts";
import { heldBy, stackProbes } from "../support/stack-probes.ts";

const IDLE_SECONDS = 4;
const CHANGED_BYTES = 2 * (64 << 10);
let stack: Stack;
const call: Stack["call"] = (...args) => stack.call(...args);

const { waitForOperation, waitUntil, imageOf, storeHolds } = stackProbes(() => stack, {
  operationTimeoutMs: 240_000,
});

/** The distribution the last commit started (the commit's report records it before answering). */
async function latestDistribution(imageId: string) {
  const { body } = await call("GET", "/v1/operations?page_size=200", stack.projectToken);
  const found = body.items
    .filter((op: any) => op.kind === "distribute-image-version" && op.target.id === imageId)
    .at(-1);
  if (!found) throw new Error(`no distribution of ${imageId}:\n${stack.logs()}`);
  return found;
}

/** What each manager that pulled the version printed: chunk data fetched and every byte on the wire. */
function pullFigures(imageId: string, version: number) {
  const output = stack.processes.map((p) => p.output()).join("\n");
  return [
    ...output.matchAll(
      new RegExp(`pulled ${imageId}@${version}: (\\d+) chunk bytes, (\\d+) bytes on the wire`, "g"),
    ),
  ].map((m) => ({ chunkBytes: Number(m[1]), wireBytes: Number(m[2]) }));
}

beforeAll(async () => {
  stack = await startStack({
    name: "image-updates",
    regions: ["eu-west", "us-east", "ap-south"],
    replicaIdleSeconds: IDLE_SECONDS,
  });
}, 120_000);

afterAll(() => stack?.stop());

describe("update distribution (flow 3) and image guards", () => {
  it("moves only a new version's chunks to every holder, keeps a pinned version while it runs, then collects it", async () => {
    const v1 = join(stack.dir, "guest-v1.qcow2");
    copyFileSync(ensureGuestImage(), v1);
    const imageSize = statSync(v1).size;
    const created = await call("POST", "/v1/images", stack.projectToken, {
      name: "guest",
      origin_region: "eu-west",
      format: "qcow2",
      replicate_to: ["ap-south"],
    });
    expect(created.status).toBe(201);
    const imageId = created.body.id as string;
    await uploadImage({
      path: v1,
      managerUrl: created.body.upload.url,
      token: created.body.upload.token,
      imageId,
      version: 1,
      format: "qcow2",
    });
    const first = await waitForOperation((await latestDistribution(imageId)).id);
    expect(first.state, JSON.stringify(first.error)).toBe("succeeded");

    // A group pinned to version 1 in us-east: that datacenter pulls it on demand.
    const group = await call("POST", "/v1/vm-groups", stack.projectToken, {
      name: "pinned",
      image: imageId,
      image_version: 1,
      region: "us-east",
      size: 1,
      machine: { vcpus: 1, memory_mb: 192 },
    });
    expect(group.status, JSON.stringify(group.body)).toBe(202);
    const started = await waitForOperation(group.body.id);
    expect(started.state, JSON.stringify(started.error)).toBe("succeeded");
    expect(heldBy(await imageOf(imageId))).toEqual([
      "ap-south-a@1:available",
      "eu-west-a@1:available",
      "us-east-a@1:available",
    ]);

    // The image is in use: it cannot be deleted, and the answer names the group.
    const refused = await call("DELETE", `/v1/images/${imageId}`, stack.projectToken);
    expect(refused.status).toBe(409);
    expect(refused.body.code).toBe("image_in_use");
    expect(refused.body.detail).toContain("pinned");

    // Version 2 changes 128 KiB in two places of the ~24 MiB image.
    const v2 = join(stack.dir, "guest-v2.qcow2");
    copyFileSync(v1, v2);
    const fd = openSync(v2, "r+");
    writeSync(fd, randomBytes(CHANGED_BYTES / 2), 0, CHANGED_BYTES / 2, 4 << 20);
    writeSync(fd, randomBytes(CHANGED_BYTES / 2), 0, CHANGED_BYTES / 2, 12 << 20);
    closeSync(fd);
    const ticket = (await call("POST", `/v1/images/${imageId}/uploads`, stack.projectToken)).body;
    expect(ticket.version).toBe(2);
    await uploadImage({
      path: v2,
      managerUrl: ticket.url,
      token: ticket.token,
      imageId,
      version: 2,
      format: "qcow2",
    });

    const second = await waitForOperation((await latestDistribution(imageId)).id);
    expect(second.state, JSON.stringify(second.error)).toBe("succeeded");
    // Every datacenter holding version 1 got version 2: the policy's and the on-demand one.
    expect(second.result.pulled.map((p: any) => p.datacenter)).toEqual(["ap-south-a", "us-east-a"]);
    for (const pulled of second.result.pulled) {
      expect(pulled.local_id).toEqual(expect.any(String));
      // The chunk bytes each pull reported: about the changed data, far below the image.
      expect(pulled.bytes).toBeGreaterThanOrEqual(CHANGED_BYTES);
      expect(pulled.bytes).toBeLessThan(4 * CHANGED_BYTES);
    }
    const figures = pullFigures(imageId, 2);
    expect(figures).toHaveLength(2);
    for (const { chunkBytes, wireBytes } of figures) {
      expect(chunkBytes).toBeGreaterThanOrEqual(CHANGED_BYTES);
      expect(wireBytes).toBeGreaterThanOrEqual(chunkBytes);
      expect(wireBytes).toBeLessThan(imageSize / 20);
    }
    console.log(
      `image ${imageSize} bytes, changed ${CHANGED_BYTES}: pulls moved ${figures.map((f) => `${f.chunkBytes} chunk / ${f.wireBytes} wire bytes`).join(", ")}`,
    );

    // Past the idle time: ap-south's version 1 (no longer current, unused) goes; us-east
    // keeps it, since the pinned group runs from it.
    await waitUntil(
      "ap-south lets version 1 go",
      async () =>
        heldBy(await imageOf(imageId)).some((r) => r.startsWith("ap-south-a@1")) ? undefined : true,
      60_000,
    );
    expect(storeHolds("ap-south-a", imageId, 1)).toBe(false);
    expect(storeHolds("ap-south-a", imageId, 2)).toBe(true);
    await sleep((IDLE_SECONDS + 2) * 1000);
    const kept = await imageOf(imageId);
    expect(heldBy(kept)).toContain("us-east-a@1:available");
    expect(heldBy(kept)).toContain("eu-west-a@1:available");
    expect(storeHolds("us-east-a", imageId, 1)).toBe(true);
    const members = (await call("GET", `/v1/vm-groups/${group.body.target.id}/instances`, stack.projectToken))
      .body.items;
    expect(members.map((i: any) => [i.name, i.image_version, i.state])).toEqual([["pinned-0", 1, "ready"]]);

    // The group goes: its on-demand copy of version 1 is collected after the idle time.
    const removal = await call("DELETE", `/v1/vm-groups/${group.body.target.id}`, stack.projectToken);
    expect((await waitForOperation(removal.body.id)).state).toBe("succeeded");
    await waitUntil(
      "us-east lets version 1 go",
      async () =>
        heldBy(await imageOf(imageId)).some((r) => r.startsWith("us-east-a@1")) ? undefined : true,
      60_000,
    );
    expect(storeHolds("us-east-a", imageId, 1)).toBe(false);
    // The origin keeps every version.
    expect(heldBy(await imageOf(imageId))).toEqual(
      expect.arrayContaining(["eu-west-a@1:available", "eu-west-a@2:available", "ap-south-a@2:available"]),
    );

    // Unused now: deleting it removes it from every manager.
    const deletion = await call("DELETE", `/v1/images/${imageId}`, stack.projectToken);
    expect(deletion.status).toBe(202);
    expect((await waitForOperation(deletion.body.id)).state).toBe("succeeded");
    for (const datacenter of ["eu-west-a", "us-east-a", "ap-south-a"]) {
      for (const version of [1, 2]) expect(storeHolds(datacenter, imageId, version), datacenter).toBe(false);
    }
  }, 600_000);
});
