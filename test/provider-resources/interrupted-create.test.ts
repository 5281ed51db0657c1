// A globalvm_vm_group create that outlives the apply, under the real terraform with real
// guests: Ctrl-C while the create waits on its operation, and a client-side timeout
// (`timeouts { create = "5s" }`). Both leave the operation running on the control plane and
// nothing in the state; the next apply sends the same Idempotency-Key and re-attaches to that
// operation instead of starting a second group.
//
// What keeps the create waiting, deterministically: the group is in us-east and its image is
// held only by eu-west, whose manager is stopped (SIGSTOP) for the duration. us-east's pull of
// the image hangs on it, so the operation stays in `transferring-image` until SIGCONT.

import {
  appendFileSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureGuestImage } from "../support/compute.ts";
import type { Stack } from "../support/stack.ts";
import { killGroup, runCaptured, startTerraformStack, type TerraformResult } from "../support/terraform.ts";

const root = mkdtempSync(join(tmpdir(), "globalvm-tf-interrupt-"));
const dir = join(root, "work");
const terraforms = new Set<number>();
const stopped = new Set<number>();
let stack: Stack;
let env: NodeJS.ProcessEnv = {};

/**
 * Runs terraform in its own process group (as a shell runs a foreground job), killing the
 * group when it outlives `timeoutMs`. `onOutput` sees everything printed so far.
 */
function tf(
  args: string[],
  timeoutMs: number,
  onOutput?: (output: string, pid: number) => void,
): Promise<TerraformResult> {
  return runCaptured("terraform", args, {
    cwd: dir,
    env,
    timeoutMs,
    detached: true,
    running: terraforms,
    ...(onOutput ? { onOutput } : {}),
  });
}

function expectSuccess(result: TerraformResult) {
  if (result.code !== 0)
    throw new Error(`terraform failed (${result.code}):\n${result.output}\n${stack.logs()}`);
}

/** The eu-west manager's process: the only holder of the images. */
function sourceManagerPid(): number {
  const manager = stack.processes.find((p) => p.child.spawnargs.join(" ").includes("--region eu-west"));
  if (!manager?.child.pid) throw new Error("no eu-west manager process");
  return manager.child.pid;
}

function pauseSource() {
  const pid = sourceManagerPid();
  process.kill(pid, "SIGSTOP");
  stopped.add(pid);
}

function resumeSource() {
  const pid = sourceManagerPid();
  process.kill(pid, "SIGCONT");
  stopped.delete(pid);
}

/**
 * Provider processes Terraform started from this test's directories (the mirror or
 * .terraform); not the provider daemon, which outlives Terraform on purpose.
 */
function providerProcesses(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      if (args.some((arg) => arg.startsWith("--globalvm-provider-daemon="))) continue;
      if (args.some((arg) => arg.startsWith(root) && arg.includes("terraform-provider-globalvm"))) {
        pids.push(Number(entry));
      }
    } catch {
      // exited while we looked
    }
  }
  return pids;
}

async function stateAddresses(): Promise<Record<string, Record<string, any>>> {
  const result = await tf(["show", "-json"], 60_000);
  expectSuccess(result);
  const parsed = JSON.parse(result.stdout);
  return Object.fromEntries(
    (parsed.values?.root_module?.resources ?? []).map((r: any) => [r.address, r.values]),
  );
}

async function groupsNamed(name: string): Promise<any[]> {
  const answer = await stack.call("GET", "/v1/vm-groups?page_size=200", stack.projectToken);
  return answer.body.items.filter((g: any) => g.name === name);
}

async function createOperationsOf(groupId: string): Promise<any[]> {
  const answer = await stack.call("GET", "/v1/operations?page_size=200", stack.projectToken);
  return answer.body.items.filter((op: any) => op.kind === "create-vm-group" && op.target.id === groupId);
}

/** Resolves once `check` returns a value, polling; rejects after `timeoutMs`. */
async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs: number,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await check();
    if (value !== undefined) return value;
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}\n${stack.logs()}`);
}

const images = (a: string, b: string) => `terraform {
  required_providers {
    globalvm = { source = "globalvm/globalvm", version = "0.1.0" }
  }
}

provider "globalvm" {}

resource "globalvm_image" "a" {
  name          = "guest-a"
  source        = "${a}"
  format        = "qcow2"
  origin_region = "eu-west"
}

resource "globalvm_image" "b" {
  name          = "guest-b"
  source        = "${b}"
  format        = "qcow2"
  origin_region = "eu-west"
}
`;

const group = (name: string, image: string, createTimeout: string) => `
resource "globalvm_vm_group" "${name}" {
  name   = "${name}"
  image  = globalvm_image.${image}.id
  region = "us-east"
  size   = 1

  machine {
    vcpus     = 1
    memory_mb = 192
  }

  timeouts {
    create = "${createTimeout}"
  }
}
`;

let imageFiles: [string, string] = ["", ""];

beforeAll(async () => {
  mkdirSync(dir, { recursive: true });
  ({ stack, env } = await startTerraformStack(root, {
    name: "tf-interrupt",
    regions: ["eu-west", "us-east"],
  }));
  // Two bootable images with different bytes, so each group's create needs its own pull from
  // eu-west (qemu ignores data past a qcow2 image's end).
  const a = join(dir, "guest-a.qcow2");
  const b = join(dir, "guest-b.qcow2");
  copyFileSync(ensureGuestImage(), a);
  copyFileSync(a, b);
  appendFileSync(b, Buffer.from("a second image: the same guest with a different tail\n".repeat(64)));
  imageFiles = [a, b];
  writeFileSync(join(dir, "main.tf"), images(a, b));
  expectSuccess(await tf(["init", "-input=false", "-no-color"], 120_000));
  expectSuccess(await tf(["apply", "-auto-approve", "-input=false", "-no-color"], 240_000));
}, 600_000);

afterAll(async () => {
  for (const pid of stopped) process.kill(pid, "SIGCONT");
  for (const pid of terraforms) killGroup(pid, "SIGKILL");
  await stack?.stop();
  rmSync(root, { recursive: true, force: true });
}, 120_000);

describe("a VM group create that outlives the apply", () => {
  it("Ctrl-C stops the apply cleanly, and the next apply re-attaches to the same operation", async () => {
    writeFileSync(join(dir, "main.tf"), images(...imageFiles) + group("interrupted", "a", "10m"));
    pauseSource();
    let interruptedAt = 0;
    let watching = false;
    let declared: { group: any; operation: any } | undefined;
    const apply = await tf(
      ["apply", "-auto-approve", "-input=false", "-no-color"],
      180_000,
      (output, pid) => {
        if (watching || !output.includes("globalvm_vm_group.interrupted: Creating...")) return;
        watching = true;
        // Ctrl-C once the group exists and its operation is under way (the create is following it).
        eventually(
          "the group to be declared",
          async () => {
            const [found] = await groupsNamed("interrupted");
            const [operation] = found ? await createOperationsOf(found.id) : [];
            return operation && !operation.done ? { group: found, operation } : undefined;
          },
          60_000,
        )
          .then((found) => {
            declared = found;
            interruptedAt = Date.now();
            // A terminal's Ctrl-C signals the whole foreground process group, provider included.
            killGroup(pid, "SIGINT");
          })
          // Never declared: the apply runs to its end and the assertions below say so.
          .catch(() => {});
      },
    );
    expect(interruptedAt, apply.output).toBeGreaterThan(0);
    const stoppedAfterMs = Date.now() - interruptedAt;
    expect(apply.code, apply.output).not.toBe(0);
    expect(apply.output).toContain("Interrupt received");
    expect(apply.output).toContain("Operation cancelled");
    expect(stoppedAfterMs, apply.output).toBeLessThan(10_000);
    console.log(`terraform exited ${stoppedAfterMs} ms after Ctrl-C (code ${apply.code})`);
    await sleep(500);
    expect(providerProcesses()).toEqual([]);

    // The state is consistent: the images, no group (a failed create records nothing).
    expect(Object.keys(await stateAddresses()).sort()).toEqual(["globalvm_image.a", "globalvm_image.b"]);
    // The group and its operation live on, still waiting for the image.
    if (!declared) throw new Error("unreachable: interrupted without a declared group");
    const [running] = await createOperationsOf(declared.group.id);
    expect(running).toMatchObject({ id: declared.operation.id, done: false });

    resumeSource();
    expectSuccess(await tf(["apply", "-auto-approve", "-input=false", "-no-color"], 300_000));
    const groups = await groupsNamed("interrupted");
    expect(groups.map((g) => g.id)).toEqual([declared.group.id]);
    expect(groups[0]).toMatchObject({ state: "ready", datacenter: "us-east-a" });
    const operations = await createOperationsOf(declared.group.id);
    expect(operations.map((op) => [op.id, op.state])).toEqual([[declared.operation.id, "succeeded"]]);
    const state = (await stateAddresses())["globalvm_vm_group.interrupted"];
    expect(state).toMatchObject({ id: declared.group.id, datacenter: "us-east-a" });
    expect(state?.instances.map((i: any) => i.state)).toEqual(["ready"]);
    expect(providerProcesses()).toEqual([]);
  }, 600_000);

  it("a client-side timeout leaves the operation running, and the next apply re-attaches to it", async () => {
    const withSlow = (timeout: string) =>
      images(...imageFiles) + group("interrupted", "a", "10m") + group("slow", "b", timeout);
    writeFileSync(join(dir, "main.tf"), withSlow("5s"));
    pauseSource();
    const timedOut = await tf(["apply", "-auto-approve", "-input=false", "-no-color"], 180_000);
    expect(timedOut.code, timedOut.output).toBe(1);
    expect(timedOut.output).toContain("Timed out waiting for creating VM group slow");
    // Terraform wraps the detail; compare it with its line breaks as spaces.
    expect(timedOut.output.replace(/\s+/g, " ")).toContain(
      "It keeps running on the control plane; apply again to re-attach to it",
    );
    const [slow] = await groupsNamed("slow");
    expect(slow).toBeDefined();
    const [operation] = await createOperationsOf(slow.id);
    expect(operation).toMatchObject({ done: false });
    expect(operation.progress.step).toBe("transferring-image");
    expect(Object.keys(await stateAddresses())).not.toContain("globalvm_vm_group.slow");

    // Still stalled, a second apply with the same short timeout re-attaches and times out again.
    const again = await tf(["apply", "-auto-approve", "-input=false", "-no-color"], 180_000);
    expect(again.code, again.output).toBe(1);
    expect(again.output).toContain("Timed out waiting for creating VM group slow");
    expect((await groupsNamed("slow")).map((g) => g.id)).toEqual([slow.id]);

    // With the source back and a longer timeout (not part of the request), the same operation ends.
    resumeSource();
    writeFileSync(join(dir, "main.tf"), withSlow("10m"));
    expectSuccess(await tf(["apply", "-auto-approve", "-input=false", "-no-color"], 300_000));
    expect((await groupsNamed("slow")).map((g) => g.id)).toEqual([slow.id]);
    const operations = await createOperationsOf(slow.id);
    expect(operations.map((op) => [op.id, op.state])).toEqual([[operation.id, "succeeded"]]);
    const state = (await stateAddresses())["globalvm_vm_group.slow"];
    expect(state).toMatchObject({ id: slow.id, datacenter: "us-east-a" });

    const clean = await tf(["plan", "-detailed-exitcode", "-input=false", "-no-color"], 120_000);
    expect(clean.code, clean.output).toBe(0);
    expectSuccess(await tf(["destroy", "-auto-approve", "-input=false", "-no-color"], 300_000));
    expect((await stack.call("GET", "/v1/vm-groups", stack.projectToken)).body.items).toEqual([]);
  }, 600_000);
});
