// npm run bench:provider
// 1. spawn → handshake line of the bundled provider vs `node -e ''` (same node binary), median;
//    target ≤ 2.5×. Measured as users get it (each launch served by the provider daemon,
//    already running) and served in the launched process (GLOBALVM_PROVIDER_DAEMON=0), plus
//    the one launch that starts the daemon.
// 2. `terraform plan` with no changes: 50 globalvm_vm_group resources vs 50 terraform_data;
//    target ≤ 4×. Both ways again, plus one plan whose first launch starts the daemon.
//    The groups live in a real control plane this bench starts (embedded PGlite catalog, in
//    this process) with its orchestrator off (`orchestrate: false`): apply declares them and
//    their operations stay pending, which is all a no-change plan needs — every refresh reads
//    the groups and their instances through the API (batched), every plan checks the region. No guest
//    boots (`wait_for_ready = false`), so the figure is the provider's own cost, not QEMU's.

import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { startControlPlane } from "../api/server.ts";
import { bundleProvider, REPO_ROOT } from "../provider/build/bundle.ts";
import { installProvider } from "../provider/build/install.ts";
import { createServerCertificate } from "../provider/server/certificate.ts";
import { pluginEnvironment } from "../test/provider/helpers.ts";
import { type TerraformResult, terraformEnvironment } from "../test/support/terraform.ts";
import { median } from "./stats.ts";

/** Issue 16's targets: "as fast as the protocol allows" (a provider is a Node process). */
const SPAWN_TARGET = 2.5;
const PLAN_TARGET = 4;
const SPAWN_RUNS = 21;
const PLAN_RUNS = 5;
const RESOURCES = 50;
const ADMIN_TOKEN = `bench-admin-${randomBytes(32).toString("base64url")}`;
/** No terraform run of this bench should come near this: a hang fails the bench instead. */
const TERRAFORM_TIMEOUT_MS = 300_000;

/** Runs terraform in `cwd`, killing it (and failing) after TERRAFORM_TIMEOUT_MS. */
function terraform(cwd: string, args: string[], env: NodeJS.ProcessEnv): Promise<TerraformResult> {
  const started = performance.now();
  const child = spawn("terraform", args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk;
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk;
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), TERRAFORM_TIMEOUT_MS);
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      const elapsedMs = performance.now() - started;
      if (elapsedMs >= TERRAFORM_TIMEOUT_MS) {
        reject(
          new Error(`terraform ${args.join(" ")} ran over ${TERRAFORM_TIMEOUT_MS} ms:\n${stdout}${stderr}`),
        );
      } else {
        resolve({ code, stdout, stderr, output: stdout + stderr, elapsedMs });
      }
    });
  });
}

function timeUntilExit(command: string, args: string[]): Promise<number> {
  const started = performance.now();
  const child = spawn(command, args, { stdio: "ignore" });
  return new Promise((done) => child.once("exit", () => done(performance.now() - started)));
}

function timeUntilHandshake(executable: string, env: NodeJS.ProcessEnv): Promise<number> {
  const started = performance.now();
  const child = spawn(executable, [], { env, stdio: ["ignore", "pipe", "ignore"] });
  return new Promise((done, fail) => {
    child.once("error", fail);
    child.stdout.once("data", () => {
      const elapsed = performance.now() - started;
      child.kill("SIGKILL");
      child.once("exit", () => done(elapsed));
    });
  });
}

/** The bench's own daemon directory: its daemons are its own, and stopped at the end. */
const runtimeDir = mkdtempSync(join(tmpdir(), "globalvm-bench-run-"));
const THROUGH_DAEMON = { XDG_RUNTIME_DIR: runtimeDir };
const IN_PROCESS = { GLOBALVM_PROVIDER_DAEMON: "0" };

function stopDaemons() {
  spawnSync("pkill", ["-f", "--", `--globalvm-provider-daemon=${runtimeDir}/`]);
  // pkill returns before they are gone; a new launch must not find a dying one.
  while (spawnSync("pgrep", ["-f", "--", `--globalvm-provider-daemon=${runtimeDir}/`]).status === 0) {
    spawnSync("sleep", ["0.05"]);
  }
}

async function spawnBenchmark() {
  const dir = mkdtempSync(join(tmpdir(), "globalvm-bench-bundle-"));
  const executable = await bundleProvider({
    entry: resolve(REPO_ROOT, "provider/main.ts"),
    outfile: join(dir, "provider"),
  });
  const env = pluginEnvironment(createServerCertificate());
  const firstLaunch = await timeUntilHandshake(executable, { ...env, ...THROUGH_DAEMON });
  const node: number[] = [];
  const daemon: number[] = [];
  const inProcess: number[] = [];
  for (let run = 0; run < SPAWN_RUNS; run++) {
    node.push(await timeUntilExit(process.execPath, ["-e", ""]));
    daemon.push(await timeUntilHandshake(executable, { ...env, ...THROUGH_DAEMON }));
    inProcess.push(await timeUntilHandshake(executable, { ...env, ...IN_PROCESS }));
  }
  stopDaemons();
  rmSync(dir, { recursive: true, force: true });
  return { node: median(node), daemon: median(daemon), inProcess: median(inProcess), firstLaunch };
}

/** A control plane with one region, a project, its token and one image to point groups at. */
async function startBenchControlPlane(dataDir: string) {
  const controlPlane = await startControlPlane({
    catalog: { dataDir },
    port: 0,
    adminToken: ADMIN_TOKEN,
    orchestrate: false,
    log: () => {},
  });
  const call = async (path: string, token: string, body: unknown) => {
    const response = await fetch(`${controlPlane.url}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const answer = (await response.json()) as Record<string, any>;
    if (response.status !== 201)
      throw new Error(`POST ${path}: ${response.status} ${JSON.stringify(answer)}`);
    return answer;
  };
  await call("/v1/regions", ADMIN_TOKEN, { name: "us-east" });
  const project = await call("/v1/projects", ADMIN_TOKEN, { name: "bench" });
  const token = (await call(`/v1/projects/${project.id}/tokens`, ADMIN_TOKEN, { name: "bench" }))
    .secret as string;
  const image = await call("/v1/images", token, { name: "web", format: "qcow2", origin_region: "us-east" });
  return { controlPlane, token, imageId: image.id as string };
}

async function planBenchmark() {
  const root = mkdtempSync(join(tmpdir(), "globalvm-bench-tf-"));
  const cliConfigFile = join(root, "terraform.rc");
  const installing = installProvider({ mirrorDir: join(root, "mirror"), cliConfigFile });
  const { controlPlane, token, imageId } = await startBenchControlPlane(join(root, "catalog"));
  await installing;
  const env = terraformEnvironment(cliConfigFile, {
    GLOBALVM_ENDPOINT: controlPlane.url,
    GLOBALVM_TOKEN: token,
    ...THROUGH_DAEMON,
  });
  const configs = {
    globalvm_vm_group: `terraform {
  required_providers {
    globalvm = { source = "globalvm/globalvm", version = "0.1.0" }
  }
}
provider "globalvm" {}
resource "globalvm_vm_group" "g" {
  count          = ${RESOURCES}
  name           = "web-\${count.index}"
  image          = "${imageId}"
  region         = "us-east"
  size           = 2
  metadata       = { index = tostring(count.index) }
  wait_for_ready = false
  machine {
    vcpus     = 1
    memory_mb = 256
  }
}
`,
    terraform_data: `resource "terraform_data" "d" {
  count = ${RESOURCES}
  input = { name = "web-\${count.index}", size = 2, metadata = { index = tostring(count.index) } }
}
`,
  };
  const results: Record<string, number> = {};
  try {
    for (const [name, hcl] of Object.entries(configs)) {
      const dir = join(root, name);
      mkdirSync(dir);
      writeFileSync(join(dir, "main.tf"), hcl);
      process.stderr.write(`${name}: init and apply of ${RESOURCES} resources…\n`);
      for (const args of [["init"], ["apply", "-auto-approve"]]) {
        const setup = await terraform(dir, [...args, "-input=false", "-no-color"], env);
        if (setup.code !== 0) throw new Error(`terraform ${args[0]} failed:\n${setup.output}`);
      }
      if (name === "terraform_data") {
        results.baseline = await medianPlan(dir, env);
        continue;
      }
      results.daemon = await medianPlan(dir, { ...env, ...THROUGH_DAEMON });
      results.inProcess = await medianPlan(dir, { ...env, ...IN_PROCESS });
      stopDaemons();
      results.firstPlan = await timePlan(dir, { ...env, ...THROUGH_DAEMON });
    }
  } finally {
    await controlPlane.close();
    rmSync(root, { recursive: true, force: true });
  }
  return results as Record<"baseline" | "daemon" | "inProcess" | "firstPlan", number>;
}

async function timePlan(dir: string, env: NodeJS.ProcessEnv): Promise<number> {
  const plan = await terraform(dir, ["plan", "-input=false", "-no-color", "-detailed-exitcode"], env);
  if (plan.code !== 0) throw new Error(`plan was not empty (${plan.code}):\n${plan.output}`);
  return plan.elapsedMs;
}

async function medianPlan(dir: string, env: NodeJS.ProcessEnv): Promise<number> {
  const times: number[] = [];
  for (let run = 0; run < PLAN_RUNS; run++) times.push(await timePlan(dir, env));
  return median(times);
}

const ratio = (value: number, base: number) => `${(value / base).toFixed(2)}×`;
const spawnResult = await spawnBenchmark();
console.log(
  `spawn → handshake (median of ${SPAWN_RUNS}), node -e '' ${spawnResult.node.toFixed(1)} ms (target ≤ ${SPAWN_TARGET}×):
  through the running daemon  ${spawnResult.daemon.toFixed(1)} ms, ${ratio(spawnResult.daemon, spawnResult.node)}
  in the launched process     ${spawnResult.inProcess.toFixed(1)} ms, ${ratio(spawnResult.inProcess, spawnResult.node)}
  first launch (starts it)    ${spawnResult.firstLaunch.toFixed(1)} ms, ${ratio(spawnResult.firstLaunch, spawnResult.node)}`,
);
const plan = await planBenchmark();
console.log(
  `terraform plan, ${RESOURCES} resources, no changes (median of ${PLAN_RUNS}), ${RESOURCES} terraform_data ${plan.baseline.toFixed(0)} ms (target ≤ ${PLAN_TARGET}×):
  globalvm_vm_group through the running daemon  ${plan.daemon.toFixed(0)} ms, ${ratio(plan.daemon, plan.baseline)}
  globalvm_vm_group in the launched processes   ${plan.inProcess.toFixed(0)} ms, ${ratio(plan.inProcess, plan.baseline)}
  first plan, starting the daemon (one run)     ${plan.firstPlan.toFixed(0)} ms, ${ratio(plan.firstPlan, plan.baseline)}`,
);
rmSync(runtimeDir, { recursive: true, force: true });
