// globalvm_firewall_rule under the real terraform: apply, an empty plan after it, in-place
// change, drift made outside Terraform, replacement for a new name, import, plan-time checks.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Stack } from "../support/stack.ts";
import { startTerraformStack, terraform, terraformWorkspaces } from "../support/terraform.ts";

const root = mkdtempSync(join(tmpdir(), "globalvm-tf-firewall-"));
let stack: Stack;
let env: NodeJS.ProcessEnv = {};

const config = (rule: string) => `terraform {
  required_providers {
    globalvm = { source = "globalvm/globalvm", version = "0.1.0" }
  }
}
provider "globalvm" {}
resource "globalvm_network" "backend" {
  name = "backend"
  cidr = "10.20.0.0/16"
}
resource "globalvm_firewall_rule" "web" {
  network = globalvm_network.backend.id
${rule}
}
`;

const { workdir, expectSuccess, stateOf, plan, apply } = terraformWorkspaces(root, () => ({ stack, env }));

beforeAll(async () => {
  ({ stack, env } = await startTerraformStack(root, { name: "tf-firewall", regions: ["eu-west"] }));
}, 180_000);

afterAll(async () => {
  await stack?.stop();
  rmSync(root, { recursive: true, force: true });
});

describe("globalvm_firewall_rule under terraform", () => {
  it("creates, stays clean, changes in place, follows drift, is replaced for a new name, imports, destroys", async () => {
    const rule = (name: string, ports: string) =>
      `  name = "${name}"\n  action = "allow"\n  protocol = "tcp"\n  ports = [${ports}]\n  source_cidr = "0.0.0.0/0"`;
    const dir = workdir("rule", config(rule("web", '"80"')));
    expectSuccess(await terraform(dir, ["init", "-input=false"], env));
    expectSuccess(await apply(dir));
    const first = await stateOf(dir, "globalvm_firewall_rule.web");
    expect(first).toMatchObject({
      name: "web",
      priority: 1000,
      ports: ["80"],
      source_cidr: "0.0.0.0/0",
      source_vm_group: null,
    });
    const path = `/v1/networks/${first.network}/firewall-rules/${first.rule_id}`;
    expect((await stack.call("GET", path, stack.projectToken)).body).toMatchObject({
      action: "allow",
      protocol: "tcp",
      ports: ["80"],
      source: { cidr: "0.0.0.0/0" },
    });
    expect((await plan(dir)).code).toBe(0);

    // Ports change in place: the same rule.
    writeFileSync(join(dir, "main.tf"), config(rule("web", '"80", "8000-8080"')));
    const change = await plan(dir);
    expect(change.code, change.output).toBe(2);
    expect(change.stdout).toContain("globalvm_firewall_rule.web will be updated in-place");
    expectSuccess(await apply(dir));
    expect(await stateOf(dir, "globalvm_firewall_rule.web")).toMatchObject({
      id: first.id,
      ports: ["80", "8000-8080"],
    });

    // Changed outside Terraform: the plan shows it and puts it back.
    await stack.call("PATCH", path, stack.projectToken, { action: "deny" });
    const drift = await plan(dir);
    expect(drift.code, drift.output).toBe(2);
    expect(drift.stdout).toMatch(/~ action\s+= "deny" -> "allow"/);
    expectSuccess(await apply(dir));
    expect((await plan(dir)).code).toBe(0);

    // A new name is a new rule.
    writeFileSync(join(dir, "main.tf"), config(rule("web-80", '"80", "8000-8080"')));
    const replace = await plan(dir);
    expect(replace.code, replace.output).toBe(2);
    expect(replace.stdout).toContain("must be replaced");
    expectSuccess(await apply(dir));
    const second = await stateOf(dir, "globalvm_firewall_rule.web");
    expect(second.rule_id).not.toBe(first.rule_id);
    expect((await stack.call("GET", path, stack.projectToken)).status).toBe(404);

    // Import into a fresh directory (network first, then the rule): an empty plan.
    const fresh = workdir("rule-import", config(rule("web-80", '"80", "8000-8080"')));
    expectSuccess(await terraform(fresh, ["init", "-input=false"], env));
    expectSuccess(
      await terraform(fresh, ["import", "-input=false", "globalvm_network.backend", second.network], env),
    );
    expectSuccess(
      await terraform(fresh, ["import", "-input=false", "globalvm_firewall_rule.web", second.id], env),
    );
    expect(await stateOf(fresh, "globalvm_firewall_rule.web")).toEqual(second);
    expect((await plan(fresh)).code).toBe(0);
    const badImport = await terraform(
      fresh,
      ["import", "-input=false", "globalvm_firewall_rule.other", "fwr_x"],
      env,
    );
    expect(badImport.code).not.toBe(0);

    expectSuccess(await terraform(dir, ["destroy", "-auto-approve", "-input=false"], env));
    const gone = await stack.call(
      "GET",
      `/v1/networks/${second.network}/firewall-rules/${second.rule_id}`,
      stack.projectToken,
    );
    expect(gone.status).toBe(404);
  }, 300_000);

  it("refuses bad values at plan time, naming the attribute", async () => {
    const dir = workdir(
      "rule-bad",
      config(
        '  name = "bad"\n  action = "maybe"\n  protocol = "icmp"\n  ports = ["70000"]\n  source_cidr = "10.0.0.1/8"',
      ),
    );
    expectSuccess(await terraform(dir, ["init", "-input=false"], env));
    const result = await plan(dir);
    expect(result.code).toBe(1);
    for (const summary of [
      "Invalid action",
      "Invalid port",
      "Ports without a port protocol",
      "Invalid source_cidr",
    ]) {
      expect(result.output).toContain(summary);
    }
    const noSource = workdir(
      "rule-no-source",
      config('  name = "bad"\n  action = "allow"\n  protocol = "all"'),
    );
    expectSuccess(await terraform(noSource, ["init", "-input=false"], env));
    const missing = await plan(noSource);
    expect(missing.code).toBe(1);
    expect(missing.output).toContain("Missing source");
  }, 120_000);
});
