// Acceptance test of the examples/terraform/quickstart shape under the real terraform, with
// real guests: the guest image (qcow2) uploaded to eu-west and a VM group of 2 in us-east.
// A control plane and two regional managers run as child processes; the provider is installed
// into a temporary mirror. init → apply → both guests ready in us-east and the image replica
// there available → a clean plan → the image file changes: plan shows an in-place update, apply
// uploads only the new chunks and the control plane distributes only those to us-east, where
// the group (which follows the newest version) rolls its guests onto version 2 → import
// of both resources into a fresh directory matches → destroying the group leaves no QEMU, no
// overlay, and (once idle) no us-east replica, which nobody asked for → destroy removes the image.

import { randomBytes } from "node:crypto";
import {
  appendFileSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isInstanceProcess } from "../../regional-manager/compute/qemu/process.ts";
import { ensureGuestImage } from "../support/compute.ts";
import type { Stack } from "../support/stack.ts";
import { killEach, runCaptured, startTerraformStack, type TerraformResult } from "../support/terraform.ts";

const root = mkdtempSync(join(tmpdir(), "globalvm-tf-quickstart-"));
const terraforms = new Set<number>();
let stack: Stack;
let env: NodeJS.ProcessEnv = {};
/** How long a replica nobody asked for may sit unused before the control plane collects it. */
const REPLICA_IDLE_SECONDS = 5;
/** Appended to the image file to make its next version (qemu ignores bytes past a qcow2's end). */
const APPENDED_BYTES = 192 << 10;

const call = (method: string, path: string, token: string, body?: unknown) =>
  stack.call(method, path, token, body);

/** Runs terraform in `cwd`; kills it (and so its provider) when it outlives `timeoutMs`. */
function tf(
  cwd: string,
  args: string[],
  timeoutMs: number,
  extraEnv: NodeJS.ProcessEnv = {},
): Promise<TerraformResult> {
  return runCaptured("terraform", args, {
    cwd,
    env: { ...env, ...extraEnv },
    timeoutMs,
    running: terraforms,
  });
}

const timings: Record<string, number> = {};

async function step(
  name: string,
  dir: string,
  args: string[],
  timeoutMs: number,
  extraEnv: NodeJS.ProcessEnv = {},
): Promise<TerraformResult> {
  const result = await tf(dir, args, timeoutMs, extraEnv);
  timings[name] = result.elapsedMs;
  return result;
}

function expectSuccess(result: TerraformResult) {
  if (result.code !== 0) {
    throw new Error(`terraform failed (${result.code}):\n${result.output}\n${stack.logs()}`);
  }
}

async function stateOf(dir: string): Promise<Record<string, Record<string, any>>> {
  const result = await tf(dir, ["show", "-json"], 60_000);
  expectSuccess(result);
  const parsed = JSON.parse(result.stdout);
  return Object.fromEntries(
    (parsed.values?.root_module?.resources ?? []).map((r: any) => [r.address, r.values]),
  );
}

/** QEMU pids recorded by the us-east manager, with the QMP socket that identifies each. */
function recordedVms(): { pid: number; dir: string }[] {
  const dir = join(stack.dir, "us-east-a");
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((path) => path.endsWith("instance.json"))
    .flatMap((path) => {
      try {
        const { pid } = JSON.parse(readFileSync(join(dir, path), "utf8")) as { pid?: number };
        return pid ? [{ pid, dir: join(dir, dirname(path)) }] : [];
      } catch {
        return [];
      }
    });
}

/** Copy-on-write disks the us-east manager holds for its instances. */
function overlays(): string[] {
  const dir = join(stack.dir, "us-east-a");
  return readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((path) =>
    path.endsWith("overlay.qcow2"),
  );
}

/** Resolves with what `check` returns once it is not undefined; fails after `timeoutMs`. */
async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs: number,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${stack.logs()}`);
    await sleep(500);
  }
}

/** The provider's INFO log line for the upload (TF_LOG=INFO), as numbers. */
function uploadReport(output: string): { bytesSent: number; chunksSent: number; chunksSkipped: number } {
  const line = output
    .split("\n")
    .find((l) => l.includes("provider.terraform-provider-globalvm") && l.includes("image uploaded"));
  const field = (name: string) => Number(line?.match(new RegExp(`${name}=(\\d+)`))?.[1] ?? Number.NaN);
  if (!line) throw new Error(`no "image uploaded" log line in:\n${output.slice(-5000)}`);
  return {
    bytesSent: field("bytes_sent"),
    chunksSent: field("chunks_sent"),
    chunksSkipped: field("chunks_skipped"),
  };
}

/** Live processes whose command line mentions `text` (an instance id in QEMU's arguments). */
function processesMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(text)) pids.push(Number(entry));
    } catch {
      // exited while we looked
    }
  }
  return pids;
}

const config = (image: string) => `terraform {
  required_providers {
    globalvm = { source = "globalvm/globalvm", version = "0.1.0" }
  }
}

provider "globalvm" {}

resource "globalvm_image" "web" {
  name          = "web"
  source        = "${image}"
  format        = "qcow2"
  origin_region = "eu-west"
  labels        = { app = "web" }
}

resource "globalvm_vm_group" "web" {
  name   = "web"
  image  = globalvm_image.web.id
  region = "us-east"
  size   = 2

  machine {
    vcpus     = 1
    memory_mb = 192
  }

  metadata = { ROLE = "web" }

  timeouts {
    create = "4m"
    delete = "2m"
  }
}

output "addresses" {
  value = globalvm_vm_group.web.instances[*].address
}
`;

beforeAll(async () => {
  ({ stack, env } = await startTerraformStack(root, {
    name: "tf-quickstart",
    regions: ["eu-west", "us-east"],
    replicaIdleSeconds: REPLICA_IDLE_SECONDS,
  }));
}, 180_000);

afterAll(async () => {
  killEach(terraforms);
  await stack?.stop();
  rmSync(root, { recursive: true, force: true });
}, 60_000);

describe("examples/terraform/quickstart under terraform, with real guests", () => {
  it("applies, stays clean, updates the image by its new chunks, imports both, and destroys everything it started", async () => {
    const dir = join(root, "quickstart");
    mkdirSync(dir, { recursive: true });
    const image = join(dir, "guest.qcow2");
    copyFileSync(ensureGuestImage(), image);
    writeFileSync(join(dir, "main.tf"), config(image));

    expectSuccess(await step("init", dir, ["init", "-input=false"], 60_000));
    expectSuccess(await step("apply", dir, ["apply", "-auto-approve", "-input=false"], 300_000));

    const state = await stateOf(dir);
    const img = state["globalvm_image.web"] as Record<string, any>;
    const group = state["globalvm_vm_group.web"] as Record<string, any>;
    expect(img).toMatchObject({ format: "qcow2", origin_region: "eu-west", version: 1 });
    expect(group).toMatchObject({ region: "us-east", datacenter: "us-east-a", size: 2, image: img.id });
    expect(group.instances).toHaveLength(2);

    // The API agrees: the group and both guests ready in us-east, the replica there available.
    const apiGroup = await call("GET", `/v1/vm-groups/${group.id}`, stack.projectToken);
    expect(apiGroup.body).toMatchObject({ state: "ready", region: "us-east", datacenter: "us-east-a" });
    const members = (await call("GET", `/v1/vm-groups/${group.id}/instances`, stack.projectToken)).body.items;
    // An instance names its datacenter; us-east-a is us-east's only one.
    expect(members.map((i: any) => [i.name, i.datacenter, i.state])).toEqual([
      ["web-0", "us-east-a", "ready"],
      ["web-1", "us-east-a", "ready"],
    ]);
    expect(members.map((i: any) => i.id).sort()).toEqual(group.instances.map((i: any) => i.id).sort());
    const apiImage = (await call("GET", `/v1/images/${img.id}`, stack.projectToken)).body;
    expect(apiImage.replicas).toContainEqual(
      expect.objectContaining({ region: "us-east", datacenter: "us-east-a", state: "available" }),
    );
    const vms = recordedVms().filter((vm) => isInstanceProcess(vm.pid, vm.dir));
    expect(vms).toHaveLength(2);
    // Each QEMU's command line names its instance (its directory is the instance id).
    for (const member of members) expect(processesMentioning(member.id)).toHaveLength(1);

    // Nothing to do: the refresh (new replica, instance states) must not plan a change.
    const clean = await step(
      "plan",
      dir,
      ["plan", "-detailed-exitcode", "-input=false", "-no-color"],
      120_000,
    );
    expect(clean.code, clean.output).toBe(0);

    // Change the image file: a new version. Only the image is updated, in place.
    const firstVersionSize = statSync(image).size;
    appendFileSync(image, randomBytes(APPENDED_BYTES));
    const changed = await step(
      "plan:changed",
      dir,
      ["plan", "-detailed-exitcode", "-input=false", "-no-color"],
      120_000,
    );
    expect(changed.code, changed.output).toBe(2);
    expect(changed.stdout).toContain("globalvm_image.web will be updated in-place");
    expect(changed.stdout).toContain("Plan: 0 to add, 1 to change, 0 to destroy.");
    const update = await step(
      "apply:update",
      dir,
      ["apply", "-auto-approve", "-input=false", "-no-color"],
      300_000,
      {
        TF_LOG: "INFO",
      },
    );
    expectSuccess(update);
    expect(update.stdout).toContain("Apply complete! Resources: 0 added, 1 changed, 0 destroyed.");
    const updated = (await stateOf(dir))["globalvm_image.web"] as Record<string, any>;
    expect(updated).toMatchObject({ id: img.id, version: 2, size: firstVersionSize + APPENDED_BYTES });
    expect(updated.digest).not.toBe(img.digest);

    // The upload sent only the chunks eu-west lacked: the appended bytes and the chunk they
    // joined (chunks are at most 64 KiB), far below the image size.
    const upload = uploadReport(update.output);
    expect(upload.chunksSkipped).toBeGreaterThan(0);
    expect(upload.bytesSent).toBeGreaterThanOrEqual(APPENDED_BYTES);
    expect(upload.bytesSent).toBeLessThanOrEqual(APPENDED_BYTES + 2 * 64 * 1024);
    expect(upload.bytesSent).toBeLessThan(updated.size / 10);

    // The control plane distributes version 2 to us-east, which holds version 1: only the new
    // chunks cross, as its operation reports.
    const distribution = await eventually(
      "the distribution of version 2 to us-east",
      async () => {
        const ops = (await call("GET", "/v1/operations?page_size=200", stack.projectToken)).body.items;
        return ops.find(
          (op: any) =>
            op.kind === "distribute-image-version" &&
            op.target.id === img.id &&
            op.done &&
            op.result?.version === 2,
        );
      },
      180_000,
    );
    expect(distribution.state, JSON.stringify(distribution)).toBe("succeeded");
    // Its progress is of the whole version (what us-east held of version 1 counts as done);
    // its result says what each pull fetched.
    const progressUsEast = distribution.progress.children.find((c: any) => c.datacenter === "us-east-a");
    expect(progressUsEast).toMatchObject({ bytes_done: updated.size, bytes_total: updated.size });
    const toUsEast = distribution.result.pulled.find((p: any) => p.datacenter === "us-east-a");
    expect(toUsEast.bytes).toBeGreaterThanOrEqual(APPENDED_BYTES);
    expect(toUsEast.bytes).toBeLessThanOrEqual(APPENDED_BYTES + 2 * 64 * 1024);
    expect(toUsEast.bytes).toBeLessThan(updated.size / 10);
    console.log(
      `image version 2 (${updated.size} bytes, ${APPENDED_BYTES} appended): upload sent ${upload.bytesSent} bytes in ${upload.chunksSent} chunks (${upload.chunksSkipped} skipped); distribution to us-east-a pulled ${toUsEast.bytes} bytes`,
    );
    const replicas = (await call("GET", `/v1/images/${img.id}`, stack.projectToken)).body.replicas;
    expect(replicas).toContainEqual(
      expect.objectContaining({ datacenter: "us-east-a", version: 2, state: "available" }),
    );

    // The group follows the image's newest version (no image_version pin): the control plane
    // replaces its instances one at a time with version-2 ones. Wait for that rollout, then
    // take the replaced instances into the state (they are computed, changed outside Terraform).
    const rollout = await eventually(
      "the group's rolling update to version 2",
      async () => {
        const ops = (await call("GET", "/v1/operations?page_size=200", stack.projectToken)).body.items;
        return ops.find((op: any) => op.kind === "update-vm-group" && op.target.id === group.id && op.done);
      },
      300_000,
    );
    expect(rollout.state, JSON.stringify(rollout)).toBe("succeeded");
    const rolled = (await call("GET", `/v1/vm-groups/${group.id}/instances`, stack.projectToken)).body.items;
    expect(rolled.map((i: any) => [i.datacenter, i.image_version, i.state])).toEqual([
      ["us-east-a", 2, "ready"],
      ["us-east-a", 2, "ready"],
    ]);
    const rolledVms = recordedVms().filter((vm) => isInstanceProcess(vm.pid, vm.dir));
    expect(rolledVms).toHaveLength(2);
    // The version-1 guests were stopped as their replacements became ready.
    for (const vm of vms) expect(isInstanceProcess(vm.pid, vm.dir), `QEMU ${vm.pid}`).toBe(false);
    expectSuccess(
      await step(
        "refresh:rollout",
        dir,
        ["apply", "-refresh-only", "-auto-approve", "-input=false"],
        120_000,
      ),
    );

    const cleanAfterUpdate = await step(
      "plan:after-update",
      dir,
      ["plan", "-detailed-exitcode", "-input=false", "-no-color"],
      120_000,
    );
    expect(cleanAfterUpdate.code, cleanAfterUpdate.output).toBe(0);

    // Import both resources into a fresh directory. Ignored, and why: the image's `source` is
    // the caller's local path (the API does not know it: an import reads null); the group's
    // `timeouts` and `wait_for_ready` are configuration only (an import reads null and the
    // default); `instances[].state`/`address` may legitimately move between reads.
    const fresh = join(root, "import");
    mkdirSync(fresh, { recursive: true });
    writeFileSync(join(fresh, "main.tf"), config(image));
    expectSuccess(await step("import:init", fresh, ["init", "-input=false"], 60_000));
    expectSuccess(
      await step("import:image", fresh, ["import", "-input=false", "globalvm_image.web", img.id], 120_000),
    );
    expectSuccess(
      await step(
        "import:group",
        fresh,
        ["import", "-input=false", "globalvm_vm_group.web", group.id],
        120_000,
      ),
    );
    // The applied state, refreshed now, so both were read from the same catalog.
    expectSuccess(
      await step("refresh", dir, ["apply", "-refresh-only", "-auto-approve", "-input=false"], 120_000),
    );
    const importedState = await stateOf(fresh);
    const currentState = await stateOf(dir);
    const importedImage = importedState["globalvm_image.web"] as Record<string, any>;
    const currentImage = currentState["globalvm_image.web"] as Record<string, any>;
    const { source: importedSource, ...importedImageRest } = importedImage;
    const { source: currentSource, ...currentImageRest } = currentImage;
    expect(importedImageRest).toEqual(currentImageRest);
    // The image's replicas are its current version's where its configuration asked for them:
    // the origin only (replicate_to is empty). The group's us-east copies, made on demand and
    // collected once unused, are the data source's to show, never the resource's.
    expect(importedImageRest.replicas).toEqual([
      expect.objectContaining({ datacenter: "eu-west-a", version: 2, state: "available" }),
    ]);
    expect(importedImageRest).toMatchObject({ id: img.id, version: 2, source_hash: updated.digest });
    expect(importedSource).toBeNull();
    expect(currentSource).toBe(image);
    const imported = importedState["globalvm_vm_group.web"] as Record<string, any>;
    const current = currentState["globalvm_vm_group.web"] as Record<string, any>;
    const comparable = ({ timeouts: _t, wait_for_ready: _w, instances, ...rest }: Record<string, any>) => ({
      ...rest,
      instances: instances.map((i: any) => ({ id: i.id, datacenter: i.datacenter })),
    });
    expect(comparable(imported)).toEqual(comparable(current));
    expect(imported.timeouts).toBeNull();
    expect(imported.wait_for_ready).toBe(true);
    expect(current.timeouts).toEqual({ create: "4m", update: null, delete: "2m" });

    // Destroying the group stops its QEMUs and removes their overlays (and those of the
    // replaced instances) at once: destroy waits for the delete operation...
    expectSuccess(
      await step(
        "destroy:group",
        dir,
        ["destroy", "-auto-approve", "-input=false", "-target=globalvm_vm_group.web"],
        180_000,
      ),
    );
    expect((await call("GET", `/v1/vm-groups/${group.id}`, stack.projectToken)).status).toBe(404);
    expect((await call("GET", "/v1/vm-groups", stack.projectToken)).body.items).toEqual([]);
    for (const member of [...members, ...rolled]) {
      expect((await call("GET", `/v1/instances/${member.id}`, stack.projectToken)).status).toBe(404);
      expect(processesMentioning(member.id)).toEqual([]);
    }
    for (const vm of [...vms, ...rolledVms]) {
      expect(isInstanceProcess(vm.pid, vm.dir), `QEMU ${vm.pid}`).toBe(false);
    }
    expect(overlays()).toEqual([]);
    // ...and the us-east replicas, made because the group needed them (replicate_to is empty),
    // are collected once unused for REPLICA_IDLE_SECONDS; the origin's copy stays.
    const remaining = await eventually(
      "the on-demand us-east replicas to be collected",
      async () => {
        const held = (await call("GET", `/v1/images/${img.id}`, stack.projectToken)).body.replicas;
        return held.some((r: any) => r.datacenter === "us-east-a") ? undefined : held;
      },
      REPLICA_IDLE_SECONDS * 1000 + 120_000,
    );
    expect(remaining.map((r: any) => r.datacenter)).not.toContain("us-east-a");
    expect(remaining).toContainEqual(
      expect.objectContaining({ datacenter: "eu-west-a", version: 2, state: "available" }),
    );

    expectSuccess(await step("destroy", dir, ["destroy", "-auto-approve", "-input=false"], 180_000));
    expect((await call("GET", `/v1/images/${img.id}`, stack.projectToken)).status).toBe(404);
    expect((await call("GET", "/v1/images", stack.projectToken)).body.items).toEqual([]);
    expect(await stateOf(dir)).toEqual({});

    console.log(`quickstart timings (ms): ${JSON.stringify(timings)}`);
  }, 1_200_000);
});
