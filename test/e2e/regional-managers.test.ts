// Issue 3's whole path with real processes: a control plane and two regional managers;
// an image uploaded to one is pulled by the other on request, verified, registered under
// its own local ID; a modified image moves as a delta.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { uploadImage } from "../../regional-manager/upload-client.ts";
import { type RunningProcess, startCli } from "../support/processes.ts";

const ADMIN = "e2e-admin-token-0123456789";
const processes: RunningProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), "globalvm-managers-"));
let controlPlane = "";
let projectToken = "";

async function call(method: string, path: string, token: string, body?: unknown) {
  const response = await fetch(`${controlPlane}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

async function startManager(region: string) {
  const datacenter = `${region}-a`;
  const credential = await call("POST", "/v1/manager-credentials", ADMIN, { region, datacenter });
  expect(credential.status).toBe(201);
  const manager = startCli(
    [
      "serve",
      "regional-manager",
      "--region",
      region,
      "--datacenter",
      datacenter,
      "--control-plane",
      controlPlane,
      "--data-dir",
      join(dir, datacenter),
    ],
    { GLOBALVM_MANAGER_CREDENTIAL: credential.body.secret },
  );
  processes.push(manager);
  await manager.waitFor(/regional manager of \S+ \(\S+\) on (http:\/\/\S+)/, 60_000);
}

async function waitForOperation(id: string) {
  for (let i = 0; i < 12; i++) {
    const { body } = await call("GET", `/v1/operations/${id}?wait=5s`, projectToken);
    if (body.done) return body;
  }
  const image = await call("GET", `/v1/operations/${id}`, projectToken);
  const target = await call("GET", `/v1/images/${image.body.target.id}`, projectToken);
  throw new Error(
    `operation ${id} did not finish: ${JSON.stringify(image.body)} ${JSON.stringify(target.body.replicas)}\n${processes.map((p) => p.output()).join("\n---\n")}`,
  );
}

beforeAll(async () => {
  const cp = startCli(["serve", "control-plane", "--port", "0", "--data-dir", join(dir, "cp")], {
    GLOBALVM_ADMIN_TOKEN: ADMIN,
    DATABASE_URL: undefined,
  });
  processes.push(cp);
  controlPlane = (await cp.waitFor(/control plane on (http:\/\/\S+)/, 60_000))[1] as string;
  for (const region of ["eu-west", "us-east"])
    expect((await call("POST", "/v1/regions", ADMIN, { name: region })).status).toBe(201);
  const project = await call("POST", "/v1/projects", ADMIN, { name: "acme" });
  projectToken = (await call("POST", `/v1/projects/${project.body.id}/tokens`, ADMIN, { name: "e2e" })).body
    .secret;
  await Promise.all([startManager("eu-west"), startManager("us-east")]);
}, 120_000);

afterAll(async () => {
  await Promise.all(processes.map((p) => p.stop("SIGKILL")));
  rmSync(dir, { recursive: true, force: true });
});

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
    const file = join(dir, "image.raw");
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
    expect(done2.progress.bytes_done).toBeGreaterThan(0);
    expect(done2.progress.bytes_done).toBeLessThan(1 << 20);
  }, 180_000);
});
