// Acceptance test of the examples/terraform/quickstart shape under the real terraform, with
// real guests: the guest image (qcow2) uploaded to eu-west and a VM group of 2 in us-east.
// A control plane and two regional managers run as child processes; the provider is installed
// into a temporary mirror. init → apply → both guests ready in us-east and the image replica
// there available → a clean plan → import of the group into a fresh directory matches →
// destroy leaves no group, no instance and no QEMU.

import { spawn } from "node:child_process";
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installProvider } from "../../provider/build/install.ts";
import { isInstanceProcess } from "../../regional-manager/compute/qemu/process.ts";
import { ensureGuestImage } from "../compute/support.ts";
import { type TerraformResult, terraformEnvironment } from "../provider/terraform-cli.ts";
import { type Stack, startStack } from "../support/stack.ts";

const root = mkdtempSync(join(tmpdir(), "globalvm-tf-quickstart-"));
const terraforms = new Set<number>();
let stack: Stack;
let env: NodeJS.ProcessEnv = {};

const call = (method: string, path: string, token: string, body?: unknown) =>
  stack.call(method, path, token, body);

/** Runs terraform in `cwd`; kills it (and so its provider) when it outlives `timeoutMs`. */
function tf(cwd: string, args: string[], timeoutMs: number): Promise<TerraformResult> {
  const started = Date.now();
  const child = spawn("terraform", args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  if (child.pid) terraforms.add(child.pid);
  let stdout = "";
  let stderr = "";
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk;
    output += chunk;
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk;
    output += chunk;
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      if (child.pid) terraforms.delete(child.pid);
      if (Date.now() - started >= timeoutMs) output += `\n[killed after ${timeoutMs} ms]`;
      resolve({ code, stdout, stderr, output, elapsedMs: Date.now() - started });
    });
  });
}

const timings: Record<string, number> = {};

async function step(name: string, dir: string, args: string[], timeoutMs: number): Promise<TerraformResult> {
  const result = await tf(dir, args, timeoutMs);
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
function recordedVms(): { pid: number; qmp: string }[] {
  const dir = join(stack.dir, "us-east-a");
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((path) => path.endsWith("instance.json"))
    .flatMap((path) => {
      try {
        const { pid } = JSON.parse(readFileSync(join(dir, path), "utf8")) as { pid?: number };
        return pid ? [{ pid, qmp: join(dir, dirname(path), "qmp.sock") }] : [];
      } catch {
        return [];
      }
    });
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
  const installing = installProvider({
    mirrorDir: join(root, "mirror"),
    cliConfigFile: join(root, "terraform.rc"),
  });
  stack = await startStack({ name: "tf-quickstart", regions: ["eu-west", "us-east"] });
  const installed = await installing;
  env = terraformEnvironment(installed.cliConfigFile, {
    GLOBALVM_ENDPOINT: stack.controlPlane,
    GLOBALVM_TOKEN: stack.projectToken,
  });
}, 180_000);

afterAll(async () => {
  for (const pid of terraforms) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  await stack?.stop();
  rmSync(root, { recursive: true, force: true });
}, 60_000);

describe("examples/terraform/quickstart under terraform, with real guests", () => {
  it("applies, stays clean, imports the group, and destroys everything it started", async () => {
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
    const vms = recordedVms().filter((vm) => isInstanceProcess(vm.pid, vm.qmp));
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

    // Import the group into a fresh directory. Ignored, and why: `timeouts` and
    // `wait_for_ready` are configuration only (the API does not store them: an import reads
    // null and the default); `instances[].state`/`address` may legitimately move between reads.
    const fresh = join(root, "import");
    mkdirSync(fresh, { recursive: true });
    writeFileSync(join(fresh, "main.tf"), config(image));
    expectSuccess(await step("import:init", fresh, ["init", "-input=false"], 60_000));
    expectSuccess(
      await step("import", fresh, ["import", "-input=false", "globalvm_vm_group.web", group.id], 120_000),
    );
    const imported = (await stateOf(fresh))["globalvm_vm_group.web"] as Record<string, any>;
    const current = (await stateOf(dir))["globalvm_vm_group.web"] as Record<string, any>;
    const comparable = ({ timeouts: _t, wait_for_ready: _w, instances, ...rest }: Record<string, any>) => ({
      ...rest,
      instances: instances.map((i: any) => ({ id: i.id, datacenter: i.datacenter })),
    });
    expect(comparable(imported)).toEqual(comparable(current));
    expect(imported.timeouts).toBeNull();
    expect(imported.wait_for_ready).toBe(true);
    expect(current.timeouts).toEqual({ create: "4m", update: null, delete: "2m" });

    expectSuccess(await step("destroy", dir, ["destroy", "-auto-approve", "-input=false"], 180_000));
    expect((await call("GET", `/v1/vm-groups/${group.id}`, stack.projectToken)).status).toBe(404);
    expect((await call("GET", "/v1/vm-groups", stack.projectToken)).body.items).toEqual([]);
    for (const member of members) {
      expect((await call("GET", `/v1/instances/${member.id}`, stack.projectToken)).status).toBe(404);
    }
    expect((await call("GET", `/v1/images/${img.id}`, stack.projectToken)).status).toBe(404);
    // Destroy waited for the delete operation, so the QEMUs are gone now, not eventually.
    for (const vm of vms) expect(isInstanceProcess(vm.pid, vm.qmp), `QEMU ${vm.pid}`).toBe(false);
    for (const member of members) expect(processesMentioning(member.id)).toEqual([]);

    console.log(`quickstart timings (ms): ${JSON.stringify(timings)}`);
  }, 600_000);
});
