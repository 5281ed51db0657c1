// examples/cdktf under the real terraform, with real guests. The example is synthesized the
// way its README says (plain Node 24 on main.ts, into a temporary outdir); terraform 1.11 then
// runs on the synthesized cdk.tf.json against a control plane and three regional managers:
// the image uploaded to eu-west, `web` placed by policy in us-east, `worker` in ap-south with
// web's instance id as metadata. init → apply → both guests ready, worker's guest saw web's
// instance id → a clean plan → destroy leaves no group and no image.

import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureGuestImage } from "../support/compute.ts";
import type { Stack } from "../support/stack.ts";
import { killEach, runCaptured, startTerraformStack, type TerraformResult } from "../support/terraform.ts";

const REPO_ROOT = resolve(import.meta.dirname, "../..");
const REGIONS = ["eu-west", "us-east", "ap-south"];
const root = mkdtempSync(join(tmpdir(), "globalvm-cdktf-example-"));
const children = new Set<number>();
let stack: Stack;
let env: NodeJS.ProcessEnv = {};

const timings: Record<string, number> = {};

async function tf(name: string, dir: string, args: string[], timeoutMs: number) {
  const result = await runCaptured("terraform", [...args, "-no-color"], {
    cwd: dir,
    env,
    timeoutMs,
    running: children,
  });
  timings[name] = result.elapsedMs;
  return result;
}

function expectSuccess(result: TerraformResult) {
  if (result.code !== 0) {
    throw new Error(`command failed (${result.code}):\n${result.output}\n${stack.logs()}`);
  }
}

beforeAll(async () => {
  ({ stack, env } = await startTerraformStack(root, { name: "cdktf-example", regions: REGIONS }));
}, 180_000);

afterAll(async () => {
  killEach(children);
  await stack?.stop();
  rmSync(root, { recursive: true, force: true });
}, 60_000);

describe("examples/cdktf under terraform, with real guests", () => {
  it("synthesizes, applies, stays clean and destroys", async () => {
    const outdir = join(root, "cdktf.out");
    const synth = await runCaptured(process.execPath, ["examples/cdktf/main.ts"], {
      cwd: REPO_ROOT,
      env: { ...process.env, CDKTF_OUTDIR: outdir, GLOBALVM_REGIONS: REGIONS.join(",") },
      timeoutMs: 60_000,
      running: children,
    });
    timings.synth = synth.elapsedMs;
    expect(synth.code, synth.output).toBe(0);
    const dir = join(outdir, "stacks", "globalvm");
    const synthesized = JSON.parse(readFileSync(join(dir, "cdk.tf.json"), "utf8"));
    // The provider's credentials come from the environment, never from the synthesized file.
    expect(synthesized.provider).toEqual({ globalvm: [{}] });

    const image = ensureGuestImage();
    expectSuccess(await tf("init", dir, ["init", "-input=false"], 60_000));
    expectSuccess(
      await tf("apply", dir, ["apply", "-auto-approve", "-input=false", `-var=image_file=${image}`], 420_000),
    );

    const outputs = await tf("output", dir, ["output", "-json"], 60_000);
    expectSuccess(outputs);
    const values = Object.fromEntries(
      Object.entries(JSON.parse(outputs.stdout) as Record<string, { value: unknown }>).map(([k, v]) => [
        k,
        v.value,
      ]),
    );

    const groups = (await stack.call("GET", "/v1/vm-groups", stack.projectToken)).body.items as any[];
    const byName = Object.fromEntries(groups.map((g) => [g.name, g]));
    // Placed by its policy (the group names no region): the policy's only region's datacenter.
    expect(byName.web).toMatchObject({ state: "ready", datacenter: "us-east-a" });
    expect(byName.web.placement).toMatchObject({ regions: ["us-east"], strategy: "least-loaded" });
    expect(byName.worker).toMatchObject({ state: "ready", region: "ap-south", datacenter: "ap-south-a" });
    expect(byName.worker.metadata_from).toEqual({
      WEB_INSTANCE: { vm_group: byName.web.id, instance: 0, attribute: "id" },
    });
    const instancesOf = async (group: any) =>
      (await stack.call("GET", `/v1/vm-groups/${group.id}/instances`, stack.projectToken)).body
        .items as any[];
    const [web] = await instancesOf(byName.web);
    const [worker] = await instancesOf(byName.worker);
    expect([web?.state, web?.datacenter]).toEqual(["ready", "us-east-a"]);
    expect([worker?.state, worker?.datacenter]).toEqual(["ready", "ap-south-a"]);
    expect(values).toEqual({
      web_addresses: [web.address],
      worker_addresses: [worker.address],
      web_datacenter: "us-east-a",
      worker_datacenter: "ap-south-a",
    });

    const backend = (await stack.call("GET", "/v1/networks?name=backend", stack.projectToken)).body.items[0];
    const rules = await stack.call("GET", `/v1/networks/${backend.id}/firewall-rules`, stack.projectToken);
    expect(rules.body.items).toEqual([
      expect.objectContaining({
        name: "http-from-worker",
        action: "allow",
        protocol: "tcp",
        ports: ["80"],
        source: { vm_group: "worker" },
      }),
    ]);

    // The worker's guest prints each metadata value it receives on its console: web's
    // instance id reached it through the metadata service.
    const expected = `GLOBALVM-METADATA WEB_INSTANCE=${web.id}`;
    const workerConsole = join(stack.dir, "ap-south-a", "compute", "instances", worker.id, "console.log");
    const consoleText = () => (existsSync(workerConsole) ? readFileSync(workerConsole, "utf8") : "");
    for (const deadline = Date.now() + 90_000; Date.now() < deadline; await sleep(1000)) {
      if (consoleText().includes(expected)) break;
    }
    expect(consoleText(), "worker's console").toContain(expected);

    const clean = await tf(
      "plan",
      dir,
      ["plan", "-detailed-exitcode", "-input=false", `-var=image_file=${image}`],
      180_000,
    );
    expect(clean.code, clean.output).toBe(0);

    expectSuccess(
      await tf(
        "destroy",
        dir,
        ["destroy", "-auto-approve", "-input=false", `-var=image_file=${image}`],
        300_000,
      ),
    );
    expect((await stack.call("GET", "/v1/vm-groups", stack.projectToken)).body.items).toEqual([]);
    for (const instance of [web, worker]) {
      expect((await stack.call("GET", `/v1/instances/${instance.id}`, stack.projectToken)).status).toBe(404);
    }
    expect((await stack.call("GET", "/v1/images", stack.projectToken)).body.items).toEqual([]);

    console.log(`cdktf example timings (ms): ${JSON.stringify(timings)}`);
  }, 900_000);
});
