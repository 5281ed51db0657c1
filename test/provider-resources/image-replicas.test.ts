// globalvm_image applies that end when the work has, under the real terraform (1.11 on PATH)
// against a control plane and two regional managers (eu-west, us-east) started as processes,
// without guests: a create or an update with `replicate_to` ends once every named region
// holds the new version, and a plan straight after it (outputs over `replicas` included) is
// empty; a copy another resource's VM group makes on demand never moves the image's state
// (the data source shows it, with its reason); a create or an update that times out waiting
// leaves the copying running, and the next apply waits again without uploading again.
//
// What keeps a wait from ending, deterministically: us-east's manager stopped (SIGSTOP), so
// the control plane's request that it pull the version hangs until SIGCONT.

import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Stack } from "../support/stack.ts";
import { startTerraformStack, terraform, terraformWorkspaces } from "../support/terraform.ts";

const root = mkdtempSync(join(tmpdir(), "globalvm-tf-image-replicas-"));
let stack: Stack;
let env: NodeJS.ProcessEnv = {};
const { workdir, expectSuccess, stateOf, plan, apply } = terraformWorkspaces(root, () => ({ stack, env }));
const paused = new Set<number>();

const header = `terraform {
  required_providers {
    globalvm = { source = "globalvm/globalvm", version = "0.1.0" }
  }
}
provider "globalvm" {}
`;

beforeAll(async () => {
  ({ stack, env } = await startTerraformStack(root, {
    name: "tf-image-replicas",
    regions: ["eu-west", "us-east"],
  }));
}, 180_000);

afterAll(async () => {
  for (const pid of paused) process.kill(pid, "SIGCONT");
  await stack?.stop();
  rmSync(root, { recursive: true, force: true });
});

function pauseUsEast() {
  const pid = stack.processOf("us-east").child.pid as number;
  process.kill(pid, "SIGSTOP");
  paused.add(pid);
}

function resumeUsEast() {
  const pid = stack.processOf("us-east").child.pid as number;
  process.kill(pid, "SIGCONT");
  paused.delete(pid);
}

const image = async (id: string) => (await stack.call("GET", `/v1/images/${id}`, stack.projectToken)).body;
const images = async (name: string) =>
  (await stack.call("GET", `/v1/images?name=${name}`, stack.projectToken)).body.items;
/** Terraform wraps a diagnostic's text: compare it with its whitespace collapsed. */
const flat = (text: string) => text.replace(/\s+/g, " ");
const replicaRows = (replicas: any[]) =>
  replicas.map((r) => [r.datacenter, r.version, r.state]).sort((a, b) => String(a).localeCompare(String(b)));

async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${stack.logs()}`);
    await sleep(250);
  }
}

/** A raw disk of `mib` MiB, random in its first three quarters. */
function rawDisk(file: string, mib: number): Buffer {
  const bytes = Buffer.alloc(mib << 20);
  randomBytes((mib << 20) * 0.75).copy(bytes, 0);
  writeFileSync(file, bytes);
  return bytes;
}

function imageConfig(name: string, file: string, extra = "") {
  return `${header}
resource "globalvm_image" "${name}" {
  name          = "${name}"
  source        = "${file}"
  format        = "raw"
  origin_region = "eu-west"
${extra}
}

output "replicas" {
  value = globalvm_image.${name}.replicas
}

output "where" {
  value = { for r in globalvm_image.${name}.replicas : r.region => "\${r.state}@v\${r.version}" }
}
`;
}

describe("globalvm_image with replicate_to", () => {
  it("create and update end with every named region holding the version; the next plan is empty", async () => {
    const dir = workdir("policy", "");
    const file = join(dir, "disk.raw");
    const bytes = rawDisk(file, 8);
    writeFileSync(join(dir, "main.tf"), imageConfig("policy", file, `  replicate_to  = ["us-east"]`));
    expectSuccess(await terraform(dir, ["init", "-input=false"], env));

    const created = await apply(dir);
    expectSuccess(created);
    const first = await stateOf(dir, "globalvm_image.policy");
    expect(replicaRows(first.replicas)).toEqual([
      ["eu-west-a", 1, "available"],
      ["us-east-a", 1, "available"],
    ]);
    // The control plane agrees at once: the apply did not end before the copy.
    expect(replicaRows((await image(first.id)).replicas)).toEqual(replicaRows(first.replicas));
    const clean = await plan(dir);
    expect(clean.code, clean.output).toBe(0);
    console.log(`apply with replicate_to (8 MiB, create): ${created.elapsedMs} ms`);

    // A new version: the update ends once us-east holds version 2 too.
    randomBytes(256 << 10).copy(bytes, 1 << 20);
    writeFileSync(file, bytes);
    const updated = await apply(dir);
    expectSuccess(updated);
    const second = await stateOf(dir, "globalvm_image.policy");
    expect(replicaRows(second.replicas)).toEqual([
      ["eu-west-a", 2, "available"],
      ["us-east-a", 2, "available"],
    ]);
    const api = await image(first.id);
    expect(api.version).toBe(2);
    expect(api.replicas).toContainEqual(
      expect.objectContaining({
        datacenter: "us-east-a",
        version: 2,
        state: "available",
        reason: "replicate_to",
      }),
    );
    const cleanAfterUpdate = await plan(dir);
    expect(cleanAfterUpdate.code, cleanAfterUpdate.output).toBe(0);
    console.log(`apply with replicate_to (8 MiB, update): ${updated.elapsedMs} ms`);

    // Dropping the region: the state shows the origin only, at once and after.
    writeFileSync(join(dir, "main.tf"), imageConfig("policy", file, `  replicate_to  = []`));
    expectSuccess(await apply(dir));
    const third = await stateOf(dir, "globalvm_image.policy");
    expect(replicaRows(third.replicas)).toEqual([["eu-west-a", 2, "available"]]);
    const cleanAfterDrop = await plan(dir);
    expect(cleanAfterDrop.code, cleanAfterDrop.output).toBe(0);

    expectSuccess(await terraform(dir, ["destroy", "-auto-approve", "-input=false"], env));
  }, 240_000);
});

describe("copies made on demand", () => {
  it("a VM group in another region, in the same apply, does not change the image's state", async () => {
    const dir = workdir("on-demand", "");
    // An ISO: us-east's manager pulls it for the group, then refuses to boot it (only raw and
    // qcow2 disks boot), so the copy is made and no guest runs.
    const file = join(dir, "disk.iso");
    const bytes = Buffer.alloc(1 << 20);
    randomBytes(1 << 19).copy(bytes, 1 << 19);
    bytes.write("CD001", 32769, "latin1");
    writeFileSync(file, bytes);
    writeFileSync(
      join(dir, "main.tf"),
      `${imageConfig("shared", file).replace('format        = "raw"', 'format        = "iso"')}
resource "globalvm_vm_group" "elsewhere" {
  name           = "elsewhere"
  image          = globalvm_image.shared.id
  region         = "us-east"
  size           = 1
  wait_for_ready = false
  machine {
    vcpus     = 1
    memory_mb = 64
  }
}
`,
    );
    expectSuccess(await terraform(dir, ["init", "-input=false"], env));
    expectSuccess(await apply(dir));
    const state = await stateOf(dir, "globalvm_image.shared");
    expect(replicaRows(state.replicas)).toEqual([["eu-west-a", 1, "available"]]);

    // The group's datacenter pulls the image: an on-demand copy, in the API only.
    const copy = await eventually("us-east's on-demand copy", async () => {
      const replicas = (await image(state.id)).replicas;
      return replicas.find((r: any) => r.datacenter === "us-east-a" && r.state === "available");
    });
    expect(copy.reason).toBe("on_demand");

    const after = await plan(dir);
    expect(after.code, after.output).toBe(0);
    expect(after.stdout).not.toContain("globalvm_image.shared has changed");
    expect(after.stdout).not.toContain("globalvm_image.shared will be");
    expect(after.stdout).not.toContain("Objects have changed outside of Terraform");
    expect((await stateOf(dir, "globalvm_image.shared")).replicas).toEqual(state.replicas);

    // The data source shows every copy and why it exists.
    const data = workdir(
      "on-demand-data",
      `${header}
data "globalvm_image" "shared" {
  name = "shared"
}
output "replicas" {
  value = data.globalvm_image.shared.replicas
}
`,
    );
    expectSuccess(await terraform(data, ["init", "-input=false"], env));
    expectSuccess(await apply(data));
    const output = await terraform(data, ["output", "-json"], env);
    expectSuccess(output);
    const listed = JSON.parse(output.stdout).replicas.value;
    expect(listed.map((r: any) => [r.datacenter, r.version, r.state, r.reason])).toEqual([
      ["eu-west-a", 1, "available", "origin"],
      ["us-east-a", 1, "available", "on_demand"],
    ]);

    expectSuccess(await terraform(dir, ["destroy", "-auto-approve", "-input=false"], env));
  }, 240_000);
});

describe("an apply that times out waiting for replicas", () => {
  it("leaves the copy running; the next apply waits again, uploading nothing again", async () => {
    const dir = workdir("timeout", "");
    const file = join(dir, "disk.raw");
    const bytes = rawDisk(file, 4);
    const config = (timeouts: string) =>
      imageConfig("slow", file, `  replicate_to  = ["us-east"]\n  timeouts {\n${timeouts}\n  }`);
    writeFileSync(join(dir, "main.tf"), config(`    create = "3s"`));
    expectSuccess(await terraform(dir, ["init", "-input=false"], env));

    // Create: the upload to eu-west succeeds, the copy to us-east cannot start.
    pauseUsEast();
    let timedOut: Awaited<ReturnType<typeof apply>>;
    try {
      timedOut = await apply(dir);
    } finally {
      resumeUsEast();
    }
    expect(timedOut.code, timedOut.output).toBe(1);
    expect(flat(timedOut.stderr)).toContain("Timed out waiting for the image's replicas");
    // The control plane recorded the copy it asked for (pending), or has not got to it yet.
    expect(flat(timedOut.stderr)).toMatch(/us-east: (pending \(us-east-a\)|no copy yet)/);
    expect(flat(timedOut.stderr)).toContain("apply again to wait for it (nothing is uploaded again)");
    const [made] = await images("slow");
    expect(made).toMatchObject({ version: 1 });
    expect((await stateOf(dir, "globalvm_image.slow")) ?? null).toBeNull();

    // Raising the timeout is not another image: the same one, its version 1 still.
    writeFileSync(join(dir, "main.tf"), config(`    create = "2m"`));
    const reattached = await terraform(dir, ["apply", "-auto-approve", "-input=false", "-no-color"], {
      ...env,
      TF_LOG_PROVIDER: "INFO",
    });
    expectSuccess(reattached);
    expect(reattached.output).toContain("image already uploaded by an earlier apply");
    const created = await stateOf(dir, "globalvm_image.slow");
    expect(created.id).toBe(made.id);
    expect(replicaRows(created.replicas)).toEqual([
      ["eu-west-a", 1, "available"],
      ["us-east-a", 1, "available"],
    ]);
    expect((await images("slow")).map((i: any) => [i.id, i.version])).toEqual([[made.id, 1]]);
    const clean = await plan(dir);
    expect(clean.code, clean.output).toBe(0);

    // Update: version 2 reaches eu-west, the copy to us-east cannot start.
    randomBytes(64 << 10).copy(bytes, 0);
    writeFileSync(file, bytes);
    writeFileSync(join(dir, "main.tf"), config(`    create = "2m"\n    update = "3s"`));
    pauseUsEast();
    let updateTimedOut: Awaited<ReturnType<typeof apply>>;
    try {
      updateTimedOut = await apply(dir);
    } finally {
      resumeUsEast();
    }
    expect(updateTimedOut.code, updateTimedOut.output).toBe(1);
    expect(flat(updateTimedOut.stderr)).toContain("Timed out waiting for the image's replicas");
    expect((await image(made.id)).version).toBe(2);

    // The refreshed state shows version 2 without its us-east copy: the plan waits for it.
    const pending = await plan(dir);
    expect(pending.code, pending.output).toBe(2);
    expect(pending.stdout).toContain("globalvm_image.slow will be updated in-place");
    expect(pending.stdout).toContain("(known after apply)");
    expectSuccess(await apply(dir));
    const updated = await stateOf(dir, "globalvm_image.slow");
    expect(replicaRows(updated.replicas)).toEqual([
      ["eu-west-a", 2, "available"],
      ["us-east-a", 2, "available"],
    ]);
    expect((await image(made.id)).version).toBe(2);
    const cleanAfterUpdate = await plan(dir);
    expect(cleanAfterUpdate.code, cleanAfterUpdate.output).toBe(0);

    expectSuccess(await terraform(dir, ["destroy", "-auto-approve", "-input=false"], env));
  }, 240_000);
});
