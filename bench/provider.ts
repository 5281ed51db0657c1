// npm run bench:provider
// 1. spawn → handshake line of the bundled provider vs `node -e ''` (same node binary), median.
// 2. `terraform plan` with no changes: 50 resources of the test fixture type vs 50 terraform_data.

import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { bundleProvider, REPO_ROOT } from "../provider/build/bundle.ts";
import { installProvider } from "../provider/build/install.ts";
import { createServerCertificate } from "../provider/server/certificate.ts";
import { pluginEnvironment } from "../test/provider/helpers.ts";
import { terraform, terraformEnvironment } from "../test/provider/terraform-cli.ts";

const SPAWN_RUNS = 21;
const PLAN_RUNS = 5;
const RESOURCES = 50;

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
};

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

async function spawnBenchmark() {
  const dir = mkdtempSync(join(tmpdir(), "globalvm-bench-bundle-"));
  const executable = await bundleProvider({
    entry: resolve(REPO_ROOT, "provider/main.ts"),
    outfile: join(dir, "provider"),
  });
  const env = pluginEnvironment(createServerCertificate());
  const node: number[] = [];
  const provider: number[] = [];
  for (let run = 0; run < SPAWN_RUNS; run++) {
    node.push(await timeUntilExit(process.execPath, ["-e", ""]));
    provider.push(await timeUntilHandshake(executable, env));
  }
  rmSync(dir, { recursive: true, force: true });
  return { node: median(node), provider: median(provider) };
}

async function planBenchmark() {
  const root = mkdtempSync(join(tmpdir(), "globalvm-bench-tf-"));
  const cliConfigFile = join(root, "terraform.rc");
  await installProvider({
    mirrorDir: join(root, "mirror"),
    entry: resolve(REPO_ROOT, "test/provider/fixtures/test-provider.ts"),
    cliConfigFile,
  });
  const env = terraformEnvironment(cliConfigFile);
  const configs = {
    provider: `terraform {
  required_providers {
    globalvm = { source = "globalvm/globalvm", version = "0.1.0" }
  }
}
resource "globalvm_test_file" "f" {
  count   = ${RESOURCES}
  path    = "\${path.module}/file-\${count.index}.json"
  content = "content \${count.index}"
  tags    = { index = tostring(count.index) }
  section {
    name = "s"
  }
}
`,
    baseline: `resource "terraform_data" "d" {
  count = ${RESOURCES}
  input = { content = "content \${count.index}", index = count.index }
}
`,
  };
  const results: Record<string, number> = {};
  for (const [name, hcl] of Object.entries(configs)) {
    const dir = join(root, name);
    mkdirSync(dir);
    writeFileSync(join(dir, "main.tf"), hcl);
    for (const args of [["init"], ["apply", "-auto-approve"]]) {
      const setup = await terraform(dir, [...args, "-no-color"], env);
      if (setup.code !== 0) throw new Error(`terraform ${args[0]} failed:\n${setup.output}`);
    }
    const times: number[] = [];
    for (let run = 0; run < PLAN_RUNS; run++) {
      const plan = await terraform(dir, ["plan", "-no-color", "-detailed-exitcode"], env);
      if (plan.code !== 0) throw new Error(`plan was not empty (${plan.code}):\n${plan.output}`);
      times.push(plan.elapsedMs);
    }
    results[name] = median(times);
  }
  rmSync(root, { recursive: true, force: true });
  return { provider: results.provider ?? Number.NaN, baseline: results.baseline ?? Number.NaN };
}

const spawnResult = await spawnBenchmark();
console.log(
  `spawn → handshake (median of ${SPAWN_RUNS}): provider ${spawnResult.provider.toFixed(1)} ms, node -e '' ${spawnResult.node.toFixed(1)} ms, ratio ${(spawnResult.provider / spawnResult.node).toFixed(2)}× (target ≤ 3×)`,
);
const planResult = await planBenchmark();
console.log(
  `terraform plan, ${RESOURCES} resources, no changes (median of ${PLAN_RUNS}): globalvm_test_file ${planResult.provider.toFixed(0)} ms, terraform_data ${planResult.baseline.toFixed(0)} ms, ratio ${(planResult.provider / planResult.baseline).toFixed(2)}×`,
);
