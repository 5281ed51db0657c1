// Issue 3's whole path with real processes: a control plane and two regional managers;
// an image uploaded to one is pulled by the other on request, verified, registered under
// its own local ID; a modified image moves as a delta.
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { uploadImage } from "../../client/upload.ts";
import { type Stack, startStack } from "../support/stack.ts";

let stack: Stack;
let projectToken = "";
const call = (method: string, path: string, token: string, body?: unknown) =>
  stack.call(method, path, token, body);

async function waitForOperation(id: string) {
  for (let i = 0; i < 12; i++) {
    const { body } = await call("GET", `/v1/operations/${id}?wait=5s`, projectToken);
    if (body.done) return body;
  }
  throw new Error(`operation ${id} did not finish:\n${stack.logs()}`);
}

beforeAll(async () => {
  stack = await startStack({ name: "managers", regions: ["eu-west", "us-east"] });
  projectToken = stack.projectToken;
}, 120_000);

afterAll(() => stack?.stop());

describe("regional managers as separate processes", () => {
  it("registers both datacenters, which heartbeat and are up", async () => {
    const { body } = await call("GET", "/v1/datacenters", projectToken);
    expect(body.items.map((d: any) => [d.name, d.status])).toEqual([
      ["eu-west-a", "up"],
      ["us-east-a", "up"],
    ]);
    expect(body.items[0].manager_url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });

  it("uploads to eu-west, pulls into us-east on request, and moves a modified image as a delta", async () => {
    const file = join(stack.dir, "image.raw");
    const image = Buffer.alloc(8 << 20);
    randomBytes(6 << 20).copy(image, 0); // the last 2 MiB stay zero, as on real disks
    writeFileSync(file, image);

    const created = await call("POST", "/v1/images", projectToken, {
      name: "web",
      origin_region: "eu-west",
      format: "raw",
    });
    expect(created.status).toBe(201);
    const ticket = created.body.upload;
    expect(ticket).toMatchObject({ version: 1, datacenter: "eu-west-a" });
    await uploadImage({
      path: file,
      managerUrl: ticket.url,
      token: ticket.token,
      imageId: created.body.id,
      version: 1,
      format: "raw",
    });

    const uploaded = (await call("GET", `/v1/images/${created.body.id}`, projectToken)).body;
    expect(uploaded).toMatchObject({ state: "available", version: 1, size: image.length });

    const pull = await call("POST", `/v1/images/${created.body.id}/replicas`, projectToken, {
      region: "us-east",
    });
    expect(pull.status).toBe(202);
    const pulled = await waitForOperation(pull.body.id);
    expect(pulled).toMatchObject({ state: "succeeded", result: { datacenter: "us-east-a" } });
    expect(pulled.progress).toMatchObject({ bytes_done: image.length, bytes_total: image.length });
    // The zero run never crosses.
    expect(pulled.result.bytes).toBeGreaterThanOrEqual(6 << 20);
    expect(pulled.result.bytes).toBeLessThan(image.length);

    const replicated = (await call("GET", `/v1/images/${created.body.id}`, projectToken)).body;
    const replicas = replicated.replicas.map((r: any) => ({
      dc: r.datacenter,
      state: r.state,
      local: r.local_id,
    }));
    expect(replicas.map((r: any) => [r.dc, r.state])).toEqual([
      ["eu-west-a", "available"],
      ["us-east-a", "available"],
    ]);
    expect(replicas[0].local).toEqual(expect.any(String));
    expect(replicas[1].local).toEqual(expect.any(String));
    expect(replicas[0].local).not.toBe(replicas[1].local);

    // Version 2 changes 64 KiB: only the chunks around it cross the network.
    randomBytes(64 << 10).copy(image, 3 << 20);
    writeFileSync(file, image);
    const next = await call("POST", `/v1/images/${created.body.id}/uploads`, projectToken);
    expect(next.body.version).toBe(2);
    const uploadV2 = await uploadImage({
      path: file,
      managerUrl: next.body.url,
      token: next.body.token,
      imageId: created.body.id,
      version: 2,
      format: "raw",
    });
    expect(uploadV2.bytesSent).toBeLessThan(1 << 20);
    const pull2 = await call("POST", `/v1/images/${created.body.id}/replicas`, projectToken, {
      region: "us-east",
    });
    const done2 = await waitForOperation(pull2.body.id);
    expect(done2.state).toBe("succeeded");
    // Progress is of the whole version (what us-east held of version 1 counts as done); the
    // result says what crossed.
    expect([done2.progress.bytes_done, done2.progress.bytes_total]).toEqual([image.length, image.length]);
    expect(done2.result.bytes).toBeGreaterThan(0);
    expect(done2.result.bytes).toBeLessThan(1 << 20);
  }, 180_000);
});
