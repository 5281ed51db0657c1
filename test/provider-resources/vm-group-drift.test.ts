// globalvm_vm_group under the real terraform, against a control plane whose operations this
// test finishes by hand (no orchestrator, no guests): what changed outside Terraform shows in
// the plan, and an update or a destroy that outlives its `timeouts` re-attaches to the same
// operation on the next apply instead of starting another.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { and, eq, inArray } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { updateOperation } from "../../api/catalog/operations.ts";
import { images, imageVersions, operations, vmGroups } from "../../api/catalog/schema.ts";
import { startControlPlane } from "../../api/server.ts";
import { installProvider } from "../../provider/build/install.ts";
import { strongSecret } from "../support/secrets.ts";
import { type TerraformResult, terraform, terraformEnvironment } from "../support/terraform.ts";

const ADMIN = strongSecret("drift-admin-");
const root = mkdtempSync(join(tmpdir(), "globalvm-tf-drift-"));
const dir = join(root, "work");
let controlPlane: Awaited<ReturnType<typeof startControlPlane>>;
let env: NodeJS.ProcessEnv;
let token: string;
let imageId: string;
/** Operation kinds this test finishes as soon as they appear, as an orchestrator would. */
const finishing = new Set<string>();
let finisher: NodeJS.Timeout | undefined;

async function call(method: string, path: string, body?: unknown, as = token) {
  const response = await fetch(`${controlPlane.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${as}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as Record<string, any> };
}

/** Succeeds every pending operation of the kinds in `finishing`, its group then ready or gone. */
async function finishOperations() {
  if (finishing.size === 0) return;
  const { db } = controlPlane.services;
  const due = await db
    .select()
    .from(operations)
    .where(and(inArray(operations.kind, [...finishing]), inArray(operations.state, ["pending", "running"])));
  for (const operation of due) {
    if (operation.kind === "delete-vm-group")
      await db.delete(vmGroups).where(eq(vmGroups.id, operation.targetId));
    else await db.update(vmGroups).set({ state: "ready" }).where(eq(vmGroups.id, operation.targetId));
    // As the runner does: the change wakes the long-polls waiting on the operation.
    await updateOperation(
      db,
      controlPlane.services.operationEvents,
      operation.id,
      { state: "succeeded", result: {} },
      new Date(),
    );
  }
}

function config(size: number, image = `image    = "${imageId}"`, more = "") {
  return `terraform {
  required_providers {
    globalvm = { source = "globalvm/globalvm", version = "0.1.0" }
  }
}
provider "globalvm" {}
resource "globalvm_vm_group" "web" {
  name     = "web"
  ${image}
  region   = "us-east"
  size     = ${size}
  metadata = { role = "web" }
  ${more}
  machine {
    vcpus     = 1
    memory_mb = 256
  }
  timeouts {
    create = "4s"
    update = "4s"
    delete = "4s"
  }
}
`;
}

async function tf(...args: string[]): Promise<TerraformResult> {
  return terraform(dir, [...args, "-input=false", "-no-color"], env);
}

function expectCode(result: TerraformResult, code: number) {
  if (result.code !== code)
    throw new Error(`terraform exited ${result.code}, not ${code}:\n${result.output}`);
}

async function groupOperations(kind: string) {
  const group = await controlPlane.services.db.select().from(vmGroups).where(eq(vmGroups.name, "web"));
  const id = group[0]?.id;
  const rows = await controlPlane.services.db.select().from(operations).where(eq(operations.kind, kind));
  return rows.filter((r) => !id || r.targetId === id);
}

beforeAll(async () => {
  mkdirSync(dir, { recursive: true });
  const cliConfigFile = join(root, "terraform.rc");
  const installing = installProvider({ mirrorDir: join(root, "mirror"), cliConfigFile });
  controlPlane = await startControlPlane({
    catalog: { dataDir: join(root, "catalog") },
    port: 0,
    adminToken: ADMIN,
    orchestrate: false,
    log: () => {},
  });
  await call("POST", "/v1/regions", { name: "us-east" }, ADMIN);
  const project = (await call("POST", "/v1/projects", { name: "drift" }, ADMIN)).body;
  token = (await call("POST", `/v1/projects/${project.id}/tokens`, { name: "tf" }, ADMIN)).body.secret;
  imageId = (await call("POST", "/v1/images", { name: "web", origin_region: "us-east" })).body.id;
  await installing;
  env = terraformEnvironment(cliConfigFile, { GLOBALVM_ENDPOINT: controlPlane.url, GLOBALVM_TOKEN: token });
  const tick = () => {
    finisher = setTimeout(() => void finishOperations().finally(tick), 150);
  };
  tick();
  writeFileSync(join(dir, "main.tf"), config(1));
  expectCode(await tf("init"), 0);
}, 180_000);

afterAll(async () => {
  clearTimeout(finisher);
  finishing.clear();
  await controlPlane?.close();
  rmSync(root, { recursive: true, force: true });
});

describe("globalvm_vm_group drift and re-attach", () => {
  it("shows size, metadata and machine changed outside Terraform, and puts them back", async () => {
    finishing.add("create-vm-group").add("update-vm-group");
    expectCode(await tf("apply", "-auto-approve"), 0);
    expectCode(await tf("plan", "-detailed-exitcode"), 0);

    const group = (await call("GET", "/v1/vm-groups?name=web")).body.items[0];
    const changed = await call("PATCH", `/v1/vm-groups/${group.id}`, {
      size: 3,
      metadata: { role: "db" },
      machine: { vcpus: 2, memory_mb: 512 },
    });
    expect(changed.status).toBe(202);
    const plan = await tf("plan", "-detailed-exitcode");
    expectCode(plan, 2);
    expect(plan.output).toMatch(/~ size\s+= 3 -> 1/);
    expect(plan.output).toMatch(/~ "role" = "db" -> "web"/);
    expect(plan.output).toMatch(/~ vcpus\s+= 2 -> 1/);
    expect(plan.output).toMatch(/~ memory_mb = 512 -> 256/);

    expectCode(await tf("apply", "-auto-approve"), 0);
    expectCode(await tf("plan", "-detailed-exitcode"), 0);
    expect((await call("GET", `/v1/vm-groups/${group.id}`)).body).toMatchObject({
      size: 1,
      metadata: { role: "web" },
      machine: { vcpus: 1, memory_mb: 256 },
    });
  }, 180_000);

  it("changes spread_hosts in place (false unless set), and shows it changed outside Terraform", async () => {
    finishing.add("create-vm-group").add("update-vm-group");
    const before = (await call("GET", "/v1/vm-groups?name=web")).body.items[0];
    expect(before.spread_hosts).toBe(false);
    const shown = await terraform(dir, ["state", "show", "-no-color", "globalvm_vm_group.web"], env);
    expect(shown.output).toMatch(/spread_hosts\s+= false/);

    writeFileSync(join(dir, "main.tf"), config(1, undefined, "spread_hosts = true"));
    const plan = await tf("plan", "-detailed-exitcode");
    expectCode(plan, 2);
    expect(plan.output).toContain("globalvm_vm_group.web will be updated in-place");
    expect(plan.output).toMatch(/~ spread_hosts\s+= false -> true/);
    expect(plan.output).toContain("0 to add, 1 to change, 0 to destroy");
    expectCode(await tf("apply", "-auto-approve"), 0);
    const after = (await call("GET", `/v1/vm-groups/${before.id}`)).body;
    expect(after).toMatchObject({ id: before.id, spread_hosts: true, size: 1 });
    expectCode(await tf("plan", "-detailed-exitcode"), 0);

    // Turned off outside Terraform: the plan puts it back.
    expect((await call("PATCH", `/v1/vm-groups/${before.id}`, { spread_hosts: false })).status).toBe(202);
    const drift = await tf("plan", "-detailed-exitcode");
    expectCode(drift, 2);
    expect(drift.output).toMatch(/~ spread_hosts\s+= false -> true/);

    // Removed from the configuration: back to the default, false, in place.
    writeFileSync(join(dir, "main.tf"), config(1));
    expectCode(await tf("plan", "-detailed-exitcode"), 0);
    expect((await call("PATCH", `/v1/vm-groups/${before.id}`, { spread_hosts: true })).status).toBe(202);
    const back = await tf("plan", "-detailed-exitcode");
    expectCode(back, 2);
    expect(back.output).toMatch(/~ spread_hosts\s+= true -> false/);
    expectCode(await tf("apply", "-auto-approve"), 0);
    expect((await call("GET", `/v1/vm-groups/${before.id}`)).body.spread_hosts).toBe(false);
    expectCode(await tf("plan", "-detailed-exitcode"), 0);
  }, 180_000);

  it("re-attaches to an update that outlived its timeout", async () => {
    finishing.clear();
    writeFileSync(join(dir, "main.tf"), config(2));
    const timedOut = await tf("apply", "-auto-approve");
    expectCode(timedOut, 1);
    expect(timedOut.output).toContain("Timed out waiting for updating VM group web");
    const updates = await groupOperations("update-vm-group");
    const running = updates.filter((o) => o.state === "pending");
    expect(running).toHaveLength(1);

    // The next plan says the group is still being updated and will be waited for.
    const plan = await tf("plan", "-detailed-exitcode");
    expectCode(plan, 2);
    expect(plan.output).toMatch(/~ state\s+= "updating" -> "ready"/);
    finishing.add("update-vm-group");
    expectCode(await tf("apply", "-auto-approve"), 0);
    expect(await groupOperations("update-vm-group")).toHaveLength(updates.length);
    expectCode(await tf("plan", "-detailed-exitcode"), 0);
  }, 180_000);

  it("follows an image family: the image is the family's, and the plan after apply is empty", async () => {
    finishing.add("create-vm-group").add("update-vm-group").add("delete-vm-group");
    const { db } = controlPlane.services;
    // A committed version, as a manager's upload report would leave it.
    await db
      .insert(imageVersions)
      .values({ imageId, version: 1, size: 4096, digest: `sha256:${"ab".repeat(32)}` });
    await db.update(images).set({ currentVersion: 1, state: "available" }).where(eq(images.id, imageId));
    expect((await call("PATCH", `/v1/images/${imageId}`, { family: "base" })).status).toBe(200);
    writeFileSync(join(dir, "main.tf"), config(1, `image_family = "base"`));
    expectCode(await tf("apply", "-auto-approve"), 0);
    const shown = await terraform(dir, ["state", "show", "-no-color", "globalvm_vm_group.web"], env);
    expect(shown.output).toMatch(/image_family\s+= "base"/);
    expect(shown.output).toMatch(new RegExp(`image\\s+= "${imageId}"`));
    expectCode(await tf("plan", "-detailed-exitcode"), 0);

    writeFileSync(join(dir, "main.tf"), config(1, `image = "${imageId}"\n  image_family = "base"`));
    const both = await tf("plan");
    expectCode(both, 1);
    expect(both.output).toContain("Give exactly one image");
    writeFileSync(join(dir, "main.tf"), config(1, `image_family = "base"`));
    expectCode(await tf("destroy", "-auto-approve"), 0);
  }, 180_000);

  it("re-attaches to a deletion that outlived its timeout", async () => {
    writeFileSync(join(dir, "main.tf"), config(1));
    finishing.add("create-vm-group");
    expectCode(await tf("apply", "-auto-approve"), 0);
    const [row] = await controlPlane.services.db.select().from(vmGroups).where(eq(vmGroups.name, "web"));
    const group = row?.id as string;
    finishing.clear();
    const timedOut = await tf("destroy", "-auto-approve");
    expectCode(timedOut, 1);
    expect(timedOut.output).toContain("Timed out waiting for deleting VM group web");
    expect(await groupOperations("delete-vm-group")).toHaveLength(1);
    finishing.add("delete-vm-group");
    expectCode(await tf("destroy", "-auto-approve"), 0);
    const deletions = await controlPlane.services.db
      .select()
      .from(operations)
      .where(and(eq(operations.kind, "delete-vm-group"), eq(operations.targetId, group)));
    expect(deletions.map((d) => d.state)).toEqual(["succeeded"]);
  }, 180_000);
});
