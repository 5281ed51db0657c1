// The fixture provider, bundled and installed into a filesystem mirror, driven by the real
// terraform (1.11.4 on PATH) through its whole lifecycle.

import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installProvider, lockCommand } from "../../provider/build/install.ts";
import {
  processesRunning,
  type TerraformResult,
  terraform,
  terraformEnvironment,
} from "../support/terraform.ts";
import { FIXTURE_ENTRY } from "./helpers.ts";

const root = mkdtempSync(join(tmpdir(), "globalvm-tf-"));
const mirrorDir = join(root, "mirror");
const cliConfigFile = join(root, "terraform.rc");
const env = terraformEnvironment(cliConfigFile);
let executable = "";

function workdir(name: string, hcl: string): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "main.tf"), hcl);
  return dir;
}

const header = `terraform {
  required_providers {
    globalvm = { source = "globalvm/globalvm", version = "0.1.0" }
  }
}
provider "globalvm" { label = "e2e" }
`;

function fileResource(name: string, path: string, extra = "", content = "hello") {
  return `resource "globalvm_test_file" "${name}" {
  path    = "${path}"
  content = "${content}"
  weight  = 12345678901234567891
  tags    = { env = "test", big = "9007199254740993" }
  aliases = ["x", "y"]
${extra}
  section {
    name  = "intro"
    lines = 0.1
  }
  section {
    name = "body"
  }
}
`;
}

function expectSuccess(result: TerraformResult) {
  if (result.code !== 0) throw new Error(`terraform failed (${result.code}):\n${result.output}`);
}

async function state(dir: string): Promise<Record<string, unknown>> {
  const result = await terraform(dir, ["show", "-json"], env);
  expectSuccess(result);
  const parsed = JSON.parse(result.stdout) as {
    values?: { root_module?: { resources?: { address: string; values: Record<string, unknown> }[] } };
  };
  return Object.fromEntries((parsed.values?.root_module?.resources ?? []).map((r) => [r.address, r.values]));
}

beforeAll(async () => {
  const installed = await installProvider({ mirrorDir, entry: FIXTURE_ENTRY, cliConfigFile });
  executable = installed.executable;
}, 60_000);

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

describe("the provider lifecycle under terraform", () => {
  const dir = join(root, "lifecycle");
  const fileA = join(dir, "a.json");
  const fileB = join(dir, "b.json");
  const config = (path: string, content = "hello") =>
    `${header}${fileResource("a", path, "", content)}
data "globalvm_test_file" "read" {
  path = globalvm_test_file.a.path
}
output "size" {
  value = data.globalvm_test_file.read.size
}
`;

  it("init installs it from the filesystem mirror and locks its checksum", async () => {
    workdir("lifecycle", config(fileA));
    const result = await terraform(dir, ["init", "-no-color"], env);
    expectSuccess(result);
    expect(result.stdout).toContain("Installing globalvm/globalvm v0.1.0");
    expect(readFileSync(join(dir, ".terraform.lock.hcl"), "utf8")).toMatch(/h1:[A-Za-z0-9+/=]+/);
  });

  it("plans a create, applies it, and reads the data source", async () => {
    const plan = await terraform(dir, ["plan", "-no-color", "-detailed-exitcode"], env);
    expect(plan.code).toBe(2);
    expect(plan.stdout).toContain("globalvm_test_file.a will be created");
    expect(plan.stdout).toMatch(/id\s+= \(known after apply\)/);
    expect(plan.stdout).toMatch(/mode\s+= "0644"/);

    const apply = await terraform(dir, ["apply", "-auto-approve", "-no-color"], env);
    expectSuccess(apply);
    expect(apply.stdout).toContain("Apply complete! Resources: 1 added, 0 changed, 0 destroyed.");
    expect(apply.stdout).toContain("size = 5");
    const stored = JSON.parse(readFileSync(fileA, "utf8"));
    expect(stored.weight).toBe("12345678901234567891");
    expect(stored.section).toEqual([
      { name: "intro", lines: "0.1" },
      { name: "body", lines: null },
    ]);
    const values = (await state(dir))["globalvm_test_file.a"];
    expect(values).toMatchObject({
      id: fileA,
      generation: 1,
      section: [{ checksum: "intro:0.1" }, { checksum: "body:0" }],
    });
  });

  it("then plans no changes (plan -detailed-exitcode exits 0)", async () => {
    const plan = await terraform(dir, ["plan", "-no-color", "-detailed-exitcode"], env);
    expect(plan.code).toBe(0);
    expect(plan.stdout).toContain("No changes.");
  });

  it("updates in place when content changes, keeping id and created_at", async () => {
    const before = (await state(dir))["globalvm_test_file.a"] as Record<string, unknown>;
    writeFileSync(join(dir, "main.tf"), config(fileA, "hello, world"));
    const plan = await terraform(dir, ["plan", "-no-color", "-detailed-exitcode"], env);
    expect(plan.code).toBe(2);
    expect(plan.stdout).toContain("will be updated in-place");
    expect(plan.stdout).toMatch(/generation\s+= 1 -> \(known after apply\)/);
    expect(plan.stdout).not.toMatch(/ id\s+= .* -> \(known after apply\)/);
    const apply = await terraform(dir, ["apply", "-auto-approve", "-no-color"], env);
    expectSuccess(apply);
    expect(apply.stdout).toContain("0 added, 1 changed, 0 destroyed");
    const after = (await state(dir))["globalvm_test_file.a"] as Record<string, unknown>;
    expect(after.id).toBe(before.id);
    expect(after.created_at).toBe(before.created_at);
    expect(after.generation).toBe(2);
  });

  it("replaces when a requires-replace attribute changes", async () => {
    writeFileSync(join(dir, "main.tf"), config(fileB, "hello, world"));
    const plan = await terraform(dir, ["plan", "-no-color"], env);
    expectSuccess(plan);
    expect(plan.stdout).toContain("must be replaced");
    expect(plan.stdout).toMatch(/path\s+= ".*a\.json" -> ".*b\.json" # forces replacement/);
    const apply = await terraform(dir, ["apply", "-auto-approve", "-no-color"], env);
    expectSuccess(apply);
    expect(apply.stdout).toContain("1 added, 0 changed, 1 destroyed");
    expect(existsSync(fileA)).toBe(false);
    expect(existsSync(fileB)).toBe(true);
  });

  it("plans a create again when the object is deleted outside terraform (drift)", async () => {
    rmSync(fileB);
    const plan = await terraform(dir, ["plan", "-no-color", "-detailed-exitcode"], env);
    expect(plan.code).toBe(2);
    expect(plan.stdout).toContain("globalvm_test_file.a will be created");
    const apply = await terraform(
      dir,
      ["apply", "-auto-approve", "-no-color"],
      terraformEnvironment(cliConfigFile, { TF_LOG: "INFO" }),
    );
    expectSuccess(apply);
    // INFO progress logs from the provider reach terraform's log, hclog JSON intact.
    expect(apply.stderr).toMatch(
      /\[INFO\]\s+provider\.terraform-provider-globalvm_v0\.1\.0: creating test file: .*path=.*b\.json/,
    );
    expect(existsSync(fileB)).toBe(true);
  });

  it("imports into a fresh state that matches the configuration", async () => {
    const fresh = workdir("imported", config(fileB, "hello, world"));
    expectSuccess(await terraform(fresh, ["init", "-no-color"], env));
    const imported = await terraform(fresh, ["import", "-no-color", "globalvm_test_file.a", fileB], env);
    expectSuccess(imported);
    expect(imported.stdout).toContain("Import successful!");
    const plan = await terraform(fresh, ["plan", "-no-color", "-detailed-exitcode"], env);
    expect(plan.stdout).toContain("No changes.");
    expect(plan.code).toBe(0);
    const original = (await state(dir))["globalvm_test_file.a"] as Record<string, unknown>;
    const copy = (await state(fresh))["globalvm_test_file.a"] as Record<string, unknown>;
    expect(copy).toEqual({ ...original });
  });

  it("keeps lock files valid when the same sources are reinstalled", async () => {
    const again = await installProvider({ mirrorDir, entry: FIXTURE_ENTRY, cliConfigFile });
    expect(again.replacedDifferentBuild).toBe(false);
    const plan = await terraform(dir, ["plan", "-no-color", "-detailed-exitcode"], env);
    expect(plan.code).toBe(0);
  });

  it("after a changed build, fails on the lock file and recovers with the printed command", async () => {
    // Same interpreter through another path: a different file, so a different checksum.
    const nodeViaOtherPath = `${dirname(process.execPath)}/./${basename(process.execPath)}`;
    const changed = await installProvider({
      mirrorDir,
      entry: FIXTURE_ENTRY,
      cliConfigFile,
      nodePath: nodeViaOtherPath,
    });
    expect(changed.replacedDifferentBuild).toBe(true);
    const broken = await terraform(dir, ["plan", "-no-color"], env);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toContain(
      "does not match any of the checksums recorded in the dependency lock file",
    );
    const [command, ...args] = lockCommand(mirrorDir).split(" ");
    expect(command).toBe("terraform");
    expectSuccess(await terraform(dir, [...args, "-no-color"], env));
    const plan = await terraform(dir, ["plan", "-no-color", "-detailed-exitcode"], env);
    expect(plan.code).toBe(0);
  });

  it("destroys everything", async () => {
    const destroy = await terraform(dir, ["destroy", "-auto-approve", "-no-color"], env);
    expectSuccess(destroy);
    expect(destroy.stdout).toContain("Destroy complete! Resources: 1 destroyed.");
    expect(existsSync(fileB)).toBe(false);
    expect(await state(dir)).toEqual({});
  });

  it("leaves no provider process behind", () => {
    expect(processesRunning(executable)).toEqual([]);
  });
});

describe("invalid configurations fail at plan with the attribute path", () => {
  const cases: { name: string; body: string; messages: RegExp[] }[] = [
    {
      name: "missing-required",
      body: `resource "globalvm_test_file" "bad" {\n  path = "/tmp/never"\n}\n`,
      messages: [/Missing required argument/, /The argument "content" is required/],
    },
    {
      name: "wrong-type",
      body: `resource "globalvm_test_file" "bad" {\n  path    = "/tmp/never"\n  content = "x"\n  weight  = "heavy"\n}\n`,
      messages: [/Incorrect attribute value type/, /weight\s+= "heavy"/],
    },
    {
      name: "validate-config",
      body: `resource "globalvm_test_file" "bad" {\n  path    = "/tmp/never"\n  content = "forbidden words"\n}\n`,
      messages: [/Error: Forbidden content/, /content = "forbidden words"/],
    },
    {
      name: "nested-path",
      body: `resource "globalvm_test_file" "bad" {\n  path    = "/tmp/never"\n  content = "ok"\n  section {\n    name  = "n"\n    lines = -1\n  }\n}\n`,
      messages: [/Error: Negative line count/, /lines = -1/],
    },
  ];

  for (const { name, body, messages } of cases) {
    it(name, async () => {
      const dir = workdir(`invalid-${name}`, `${header}${body}`);
      expectSuccess(await terraform(dir, ["init", "-no-color"], env));
      const plan = await terraform(dir, ["plan", "-no-color"], env);
      expect(plan.code).toBe(1);
      for (const message of messages) expect(plan.stderr).toMatch(message);
      expect(existsSync("/tmp/never")).toBe(false);
    });
  }
});

describe("Ctrl-C during a slow apply", () => {
  it("stops the apply through StopProvider, records nothing, and leaves no process", async () => {
    const dir = workdir(
      "interrupt",
      `${header}${fileResource("slow", join(root, "interrupt", "slow.json"), "  delay_ms = 60000")}`,
    );
    expectSuccess(await terraform(dir, ["init", "-no-color"], env));
    let interrupted = false;
    // A terminal's Ctrl-C signals the whole foreground process group, provider included.
    const apply = await terraform(dir, ["apply", "-auto-approve", "-no-color"], env, {
      detached: true,
      onOutput: (text, pid) => {
        if (!interrupted && text.includes("Creating...")) {
          interrupted = true;
          setTimeout(() => process.kill(-pid, "SIGINT"), 300);
        }
      },
    });
    expect(interrupted).toBe(true);
    expect(apply.elapsedMs).toBeLessThan(20_000);
    expect(apply.code).not.toBe(0);
    expect(apply.output).toContain("Interrupt received");
    expect(apply.output).toContain("Operation cancelled");
    expect(existsSync(join(dir, "slow.json"))).toBe(false);
    await sleep(300);
    expect(processesRunning(executable)).toEqual([]);
    const plan = await terraform(dir, ["plan", "-no-color", "-detailed-exitcode"], env);
    expect(plan.code).toBe(2);
    expect(plan.stdout).toContain("globalvm_test_file.slow will be created");
  });
});

describe("installation", () => {
  it("prints how to use the CLI configuration it writes", () => {
    const output = execFileSync(
      process.execPath,
      ["provider/build/install.ts", "--mirror", join(root, "printed", "mirror"), "--entry", FIXTURE_ENTRY],
      {
        encoding: "utf8",
      },
    );
    expect(output).toContain(`export TF_CLI_CONFIG_FILE=${join(root, "printed", "terraform.rc")}`);
    expect(output).toContain(lockCommand(join(root, "printed", "mirror")));
    const written = readFileSync(join(root, "printed", "terraform.rc"), "utf8");
    expect(written).toMatch(/filesystem_mirror \{\s+path\s+= ".*printed\/mirror"/);
    expect(written).toMatch(/direct \{\s+exclude = \["registry.terraform.io\/globalvm\/globalvm"\]/);
  });
});
