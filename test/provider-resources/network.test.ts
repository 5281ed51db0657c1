// globalvm_network under the real terraform: apply, an empty plan after it, in-place rename,
// replacement when the range changes, drift made outside Terraform, import, plan-time checks.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Stack } from "../support/stack.ts";
import { startTerraformStack, terraform, terraformWorkspaces } from "../support/terraform.ts";

const root = mkdtempSync(join(tmpdir(), "globalvm-tf-network-"));
let stack: Stack;
let env: NodeJS.ProcessEnv = {};

const config = (fields: string) => `terraform {
  required_providers {
    globalvm = { source = "globalvm/globalvm", version = "0.1.0" }
  }
}
provider "globalvm" {}
resource "globalvm_network" "backend" {
${fields}
}
`;

const { workdir, expectSuccess, stateOf, plan, apply } = terraformWorkspaces(root, () => ({ stack, env }));
const networkState = (dir: string) => stateOf(dir, "globalvm_network.backend");

beforeAll(async () => {
  ({ stack, env } = await startTerraformStack(root, { name: "tf-network", regions: ["eu-west"] }));
}, 180_000);

afterAll(async () => {
  await stack?.stop();
  rmSync(root, { recursive: true, force: true });
});

describe("globalvm_network under terraform", () => {
  it("creates, stays clean, renames in place, is replaced for a new range, imports, destroys", async () => {
    const fields = (name: string, cidr: string) =>
      `  name = "${name}"\n  cidr = "${cidr}"\n  labels = { team = "db" }`;
    const dir = workdir("network", config(fields("backend", "10.20.0.0/16")));
    expectSuccess(await terraform(dir, ["init", "-input=false"], env));
    expectSuccess(await apply(dir));
    const first = await networkState(dir);
    expect(first).toMatchObject({ name: "backend", cidr: "10.20.0.0/16", subnet_prefix_length: 24 });
    const api = await stack.call("GET", `/v1/networks/${first.id}`, stack.projectToken);
    expect(api.body).toMatchObject({ name: "backend", cidr: "10.20.0.0/16", labels: { team: "db" } });
    expect((await plan(dir)).code).toBe(0);

    // A rename is in place: the same network.
    writeFileSync(join(dir, "main.tf"), config(fields("database", "10.20.0.0/16")));
    const rename = await plan(dir);
    expect(rename.code, rename.output).toBe(2);
    expect(rename.stdout).toContain("globalvm_network.backend will be updated in-place");
    expectSuccess(await apply(dir));
    expect(await networkState(dir)).toMatchObject({ id: first.id, name: "database" });

    // Changed outside Terraform: the plan shows it and puts it back.
    await stack.call("PATCH", `/v1/networks/${first.id}`, stack.projectToken, { labels: { team: "x" } });
    const drift = await plan(dir);
    expect(drift.code, drift.output).toBe(2);
    expect(drift.stdout).toMatch(/~ "team" = "x" -> "db"/);
    expectSuccess(await apply(dir));
    expect((await plan(dir)).code).toBe(0);

    // A new range replaces the network.
    writeFileSync(join(dir, "main.tf"), config(fields("database", "10.21.0.0/16")));
    const replace = await plan(dir);
    expect(replace.code, replace.output).toBe(2);
    expect(replace.stdout).toContain("must be replaced");
    expectSuccess(await apply(dir));
    const second = await networkState(dir);
    expect(second.id).not.toBe(first.id);
    expect((await stack.call("GET", `/v1/networks/${first.id}`, stack.projectToken)).status).toBe(404);

    // Import into a fresh directory: the same object, and an empty plan.
    const fresh = workdir("network-import", config(fields("database", "10.21.0.0/16")));
    expectSuccess(await terraform(fresh, ["init", "-input=false"], env));
    expectSuccess(
      await terraform(fresh, ["import", "-input=false", "globalvm_network.backend", second.id], env),
    );
    expect(await networkState(fresh)).toEqual(second);
    expect((await plan(fresh)).code).toBe(0);

    expectSuccess(await terraform(dir, ["destroy", "-auto-approve", "-input=false"], env));
    expect((await stack.call("GET", `/v1/networks/${second.id}`, stack.projectToken)).status).toBe(404);
  }, 300_000);

  it("refuses a range outside private space at plan time, naming the attribute", async () => {
    const dir = workdir("network-bad", config('  name = "public"\n  cidr = "8.8.0.0/16"'));
    expectSuccess(await terraform(dir, ["init", "-input=false"], env));
    const result = await plan(dir);
    expect(result.code).toBe(1);
    expect(result.output).toContain("Invalid cidr");
    expect(result.output).toContain("must lie within 10.0.0.0/8");
    expect(result.output).toMatch(/on main\.tf line \d+, in resource "globalvm_network" "backend":/);
  }, 120_000);
});
