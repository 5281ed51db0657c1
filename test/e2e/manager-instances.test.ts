// A regional manager runs a real guest for the control plane: a control plane and one manager
// as real processes, the guest image uploaded into the manager's store, an instance started
// through the manager's instance API with a control-plane-signed instance token (the way the
// orchestrator will call it), its states reported back to the catalog until `ready`, a
// metadata change reaching the guest's console within 1 s, and delete cleaning up.
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Catalog, openCatalog } from "../../api/catalog/db.ts";
import { findNetworkByReference } from "../../api/catalog/networks.ts";
import { instances, vmGroups } from "../../api/catalog/schema.ts";
import { newId } from "../../api/ids.ts";
import {
  deleteInstanceOnManager,
  getInstanceOnManager,
  instanceConsoleOnManager,
  type ManagerTarget,
  setInstanceMetadataOnManager,
  startInstanceOnManager,
} from "../../api/orchestrator/manager-client.ts";
import { instanceTokenSigner, SigningKeyring } from "../../api/signing.ts";
import { resolveKeyEncryptionKey } from "../../api/signing-key-wrap.ts";
import { uploadImage } from "../../client/upload.ts";
import { readInstanceRecord } from "../../regional-manager/compute/instance-record.ts";
import { isProcessRunning } from "../../regional-manager/compute/qemu/process.ts";
import type { ManagerInstanceSpec } from "../../schemas/manager-instances.ts";
import { createTestDatabaseUrl } from "../support/catalogs.ts";
import { BOOT_MARKER, ensureGuestImage } from "../support/compute.ts";
import { type RunningProcess, startCli } from "../support/processes.ts";
import { strongSecret } from "../support/secrets.ts";

const ADMIN = strongSecret("e2e-admin-");
const DATACENTER = "eu-west-a";
const processes: RunningProcess[] = [];
const qemuPids = new Set<number>();
const dir = mkdtempSync(join(tmpdir(), "gvm-mi-"));
const managerDataDir = join(dir, DATACENTER);
let controlPlane = "";
let projectToken = "";
let catalog: Catalog | undefined;
let target: ManagerTarget;
let manager: RunningProcess;
let imageId = "";
let instanceId = "";
let spec: ManagerInstanceSpec;
let groupId = "";

async function call(method: string, path: string, token: string, body?: unknown) {
  const response = await fetch(`${controlPlane}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

function logs(): string {
  return processes.map((p) => p.output().slice(-4000)).join("\n---\n");
}

/** Polls GET /v1/instances/{id} until `done` holds; bounded. */
async function waitForInstance(id: string, done: (instance: any) => boolean, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  let last: any;
  while (Date.now() < deadline) {
    last = (await call("GET", `/v1/instances/${id}`, projectToken)).body;
    if (done(last)) return last;
    if (last?.state === "failed") break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`instance ${id} did not get there: ${JSON.stringify(last)}\n${logs()}`);
}

beforeAll(async () => {
  ensureGuestImage();
  const databaseUrl = await createTestDatabaseUrl();
  const cp = startCli(["serve", "control-plane", "--port", "0", "--data-dir", join(dir, "cp")], {
    GLOBALVM_ADMIN_TOKEN: ADMIN,
    DATABASE_URL: databaseUrl,
  });
  processes.push(cp);
  controlPlane = (await cp.waitFor(/control plane on (http:\/\/\S+)/, 60_000))[1] as string;
  catalog = openCatalog({ databaseUrl });

  expect((await call("POST", "/v1/regions", ADMIN, { name: "eu-west" })).status).toBe(201);
  const project = await call("POST", "/v1/projects", ADMIN, { name: "acme" });
  projectToken = (await call("POST", `/v1/projects/${project.body.id}/tokens`, ADMIN, { name: "e2e" })).body
    .secret;

  const credential = await call("POST", "/v1/manager-credentials", ADMIN, {
    region: "eu-west",
    datacenter: DATACENTER,
  });
  expect(credential.status).toBe(201);
  manager = startCli(
    [
      "serve",
      "regional-manager",
      "--region",
      "eu-west",
      "--datacenter",
      DATACENTER,
      "--control-plane",
      controlPlane,
      "--data-dir",
      managerDataDir,
    ],
    { GLOBALVM_MANAGER_CREDENTIAL: credential.body.secret },
  );
  processes.push(manager);
  const managerUrl = (
    await manager.waitFor(/regional manager of \S+ \(\S+\) on (http:\/\/\S+)/, 60_000)
  )[1] as string;

  const created = await call("POST", "/v1/images", projectToken, {
    name: "guest",
    origin_region: "eu-west",
    format: "qcow2",
  });
  expect(created.status).toBe(201);
  imageId = created.body.id;
  await uploadImage({
    path: ensureGuestImage(),
    managerUrl: created.body.upload.url,
    token: created.body.upload.token,
    imageId,
    version: 1,
    format: "qcow2",
  });
  expect((await call("GET", `/v1/images/${imageId}`, projectToken)).body.state).toBe("available");

  // The orchestrator's part, done by hand: a VM group of one placed in eu-west-a.
  const db = catalog.db;
  groupId = newId("vmGroup");
  instanceId = newId("instance");
  await db.insert(vmGroups).values({
    id: groupId,
    projectId: project.body.id,
    name: "web",
    imageId,
    networkId: (await findNetworkByReference(db, project.body.id, "default"))?.id as string,
    imageVersion: 1,
    region: "eu-west",
    datacenter: DATACENTER,
    size: 1,
    vcpus: 1,
    memoryMb: 192,
    metadata: { role: "web" },
    state: "pending",
  });
  await db
    .insert(instances)
    .values({ id: instanceId, vmGroupId: groupId, ordinal: 0, datacenter: DATACENTER });
  target = {
    datacenter: DATACENTER,
    managerUrl,
    signer: instanceTokenSigner(
      // The control plane's keys, opened with the secret file in its data dir.
      await SigningKeyring.open(db, resolveKeyEncryptionKey({ dataDir: join(dir, "cp") })),
    ),
  };
  spec = {
    instance_id: instanceId,
    name: "web-0",
    vm_group: "web",
    image_id: imageId,
    image_version: 1,
    vcpus: 1,
    memory_mb: 192,
    metadata: { role: "web" },
  };
}, 240_000);

afterAll(async () => {
  for (const pid of qemuPids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  await Promise.all(processes.map((p) => p.stop("SIGKILL")));
  await catalog?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("a regional manager runs instances for the control plane", () => {
  it("refuses calls without a valid instance token, and bad specs", async () => {
    const url = `${target.managerUrl}/v1/instances/${instanceId}`;
    const anonymous = await fetch(url);
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { code: string }).code).toBe("unauthenticated");

    const otherInstance = await target.signer.sign({ instanceId: newId("instance"), datacenter: DATACENTER });
    const wrong = await fetch(url, { headers: { authorization: `Bearer ${otherInstance}` } });
    expect(wrong.status).toBe(403);
    const otherDc = await target.signer.sign({ instanceId, datacenter: "us-east-a" });
    expect((await fetch(url, { headers: { authorization: `Bearer ${otherDc}` } })).status).toBe(403);

    await expect(startInstanceOnManager(target, { ...spec, vcpus: 0 })).rejects.toMatchObject({
      status: 400,
      code: "validation_failed",
    });
    await expect(startInstanceOnManager(target, { ...spec, memory_mb: 1 << 22 })).rejects.toMatchObject({
      status: 422,
      code: "capacity_exceeded",
    });
    await expect(getInstanceOnManager(target, instanceId)).rejects.toMatchObject({ status: 404 });
  });

  it("boots the instance from the stored image and reports it ready to the catalog", async () => {
    const started = Date.now();
    const status = await startInstanceOnManager(target, spec);
    expect(status).toMatchObject({ instance_id: instanceId, image_id: imageId, image_version: 1 });
    expect(["starting", "running", "ready"]).toContain(status.state);
    expect(status.pid).toEqual(expect.any(Number));
    qemuPids.add(status.pid as number);

    // A second start is idempotent: the same process.
    expect((await startInstanceOnManager(target, spec)).pid).toBe(status.pid);

    const ready = await waitForInstance(instanceId, (i) => i.state === "ready", 120_000);
    console.log(`start call to ready in the catalog: ${Date.now() - started} ms`);
    expect(ready).toMatchObject({
      datacenter: DATACENTER,
      image_version: 1,
      local_id: instanceId,
      state_reason: null,
    });
    expect(ready.guest_attributes["globalvm/ready"]).toBeDefined();
    expect(ready.boot_log_tail).toContain(`${BOOT_MARKER} instance-id=${instanceId}`);
  }, 150_000);

  it("refuses state reports for an instance of another datacenter", async () => {
    const other = await call("POST", "/v1/manager-credentials", ADMIN, {
      region: "eu-west",
      datacenter: "eu-west-b",
    });
    expect(other.status).toBe(201);
    const report = { state: "failed", state_reason: "spoofed" };
    expect(
      (await call("PUT", `/v1/datacenters/${DATACENTER}/instances/${instanceId}`, other.body.secret, report))
        .status,
    ).toBe(403);
    expect(
      (await call("PUT", `/v1/datacenters/eu-west-b/instances/${instanceId}`, other.body.secret, report))
        .status,
    ).toBe(404);
    expect((await call("GET", `/v1/instances/${instanceId}`, projectToken)).body.state).toBe("ready");
  });

  it("delivers a metadata change to the guest's console within 1 s", async () => {
    const value = `v${randomBytes(4).toString("hex")}`;
    const line = `GLOBALVM-METADATA greeting=${value}`;
    const sent = Date.now();
    await setInstanceMetadataOnManager(target, instanceId, { role: "web", greeting: value });
    let seenAfter = -1;
    while (Date.now() - sent < 5_000) {
      if ((await instanceConsoleOnManager(target, instanceId, 4096)).includes(line)) {
        seenAfter = Date.now() - sent;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    console.log(`metadata change on the guest console after ${seenAfter} ms`);
    expect(seenAfter).toBeGreaterThanOrEqual(0);
    expect(seenAfter).toBeLessThan(1_000);
  }, 20_000);

  it("refuses a guest flooding attributes with 413, and its later states still reach the catalog", async () => {
    // The instance's metadata listener, as its guest reaches it (169.254.169.254 relays there).
    const { metadataPort } = readInstanceRecord(join(managerDataDir, "compute", "instances", instanceId));
    const put = (key: string, value: string) =>
      fetch(`http://127.0.0.1:${metadataPort}/computeMetadata/v1/instance/guest-attributes/flood/${key}`, {
        method: "PUT",
        headers: { "Metadata-Flavor": "Google" },
        body: value,
      }).then((response) => response.status);
    // Control characters: 64 KiB each is 384 KiB as JSON, three of them over the control plane's 1 MiB body limit.
    const value = "\u0001".repeat(64 * 1024);
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) statuses.push(await put(`k${i}`, value));
    expect(statuses.slice(0, 3)).toEqual([200, 200, 200]);
    expect(statuses.slice(3)).toEqual(Array(5).fill(413));
    for (let i = 0; i < 200; i++) await put(`small${i}`, "x");
    await setInstanceMetadataOnManager(target, instanceId, { role: "web", after: "flood" });
    // The reports carry what fits: the instance stays ready, with its own attribute.
    const after = await waitForInstance(
      instanceId,
      (i) => Object.keys(i.guest_attributes).some((key) => key.startsWith("flood/small")),
      20_000,
    );
    expect(after.state).toBe("ready");
    expect(after.guest_attributes["globalvm/ready"]).toBeDefined();
    expect(Object.keys(after.guest_attributes).length).toBeLessThanOrEqual(128);
    expect(manager.output()).toMatch(/the report of \S+ leaves out guest attributes flood\/k/);
  }, 60_000);

  it("deletes the instance leaving no process, socket or overlay", async () => {
    const { pid } = await getInstanceOnManager(target, instanceId);
    expect(pid).toEqual(expect.any(Number));
    const instanceDir = join(managerDataDir, "compute", "instances", instanceId);
    expect(existsSync(join(instanceDir, "overlay.qcow2"))).toBe(true);

    await deleteInstanceOnManager(target, instanceId);
    expect(isProcessRunning(pid as number)).toBe(false);
    expect(existsSync(instanceDir)).toBe(false);
    await expect(getInstanceOnManager(target, instanceId)).rejects.toMatchObject({ status: 404 });
    const stopped = await waitForInstance(instanceId, (i) => i.state === "stopped", 10_000);
    expect(stopped.state).toBe("stopped");
  }, 30_000);
  it("pulls the image version first when its datacenter lacks it, then boots", async () => {
    expect((await call("POST", "/v1/regions", ADMIN, { name: "us-east" })).status).toBe(201);
    const credential = await call("POST", "/v1/manager-credentials", ADMIN, {
      region: "us-east",
      datacenter: "us-east-a",
    });
    const second = startCli(
      [
        "serve",
        "regional-manager",
        "--region",
        "us-east",
        "--datacenter",
        "us-east-a",
        "--control-plane",
        controlPlane,
        "--data-dir",
        join(dir, "us-east-a"),
      ],
      { GLOBALVM_MANAGER_CREDENTIAL: credential.body.secret },
    );
    processes.push(second);
    const url = (
      await second.waitFor(/regional manager of \S+ \(\S+\) on (http:\/\/\S+)/, 60_000)
    )[1] as string;
    const remote: ManagerTarget = { ...target, datacenter: "us-east-a", managerUrl: url };
    const id = newId("instance");
    await catalog?.db
      .insert(instances)
      // As the orchestrator records it: the version it boots is what lets us-east-a pull it.
      .values({ id, vmGroupId: groupId, ordinal: 1, datacenter: "us-east-a", imageVersion: 1 });

    const accepted = await startInstanceOnManager(remote, { ...spec, instance_id: id, name: "web-1" });
    expect(accepted.state).toBe("transferring-image");
    const ready = await waitForInstance(id, (i) => i.state === "ready", 150_000);
    expect(ready.boot_log_tail).toContain(`${BOOT_MARKER} instance-id=${id}`);
    const image = (await call("GET", `/v1/images/${imageId}`, projectToken)).body;
    expect(image.replicas.map((r: any) => [r.datacenter, r.state])).toEqual([
      ["eu-west-a", "available"],
      ["us-east-a", "available"],
    ]);
    const { pid } = await getInstanceOnManager(remote, id);
    qemuPids.add(pid as number);
    await deleteInstanceOnManager(remote, id);
    expect(isProcessRunning(pid as number)).toBe(false);
  }, 240_000);
});
