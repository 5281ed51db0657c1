// The CDKTF bindings in provider/cdktf/generated: up to date with the provider's schema, made
// from a schema document that is exactly what terraform prints for the installed provider,
// and importable as `globalvm/cdktf` by plain Node (no build step).

import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { installProvider, PROVIDER_ADDRESS } from "../../provider/build/install.ts";
import { globalvmProvider } from "../../provider/globalvm-provider.ts";
import { BINDINGS_DIR, withExplicitIndex, withFlatExports } from "../../scripts/generate-cdktf-bindings.ts";
import { providerSchemaDocument } from "../../scripts/provider-schema-json.ts";
import { terraform, terraformEnvironment } from "../support/terraform.ts";

const REPO_ROOT = resolve(import.meta.dirname, "../..");
const root = mkdtempSync(join(tmpdir(), "globalvm-cdktf-bindings-"));

afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Runs a command from the repository root; `node` is Node 24 (this process's). */
function run(command: string, args: string[]) {
  const child = spawn(command, args, {
    cwd: REPO_ROOT,
    env: process.env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => {
    output += chunk;
  });
  child.stderr.on("data", (chunk: Buffer) => {
    output += chunk;
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
  return new Promise<{ code: number | null; output: string }>((done, fail) => {
    child.once("error", fail);
    child.once("close", (code) => {
      clearTimeout(timer);
      done({ code, output });
    });
  });
}

function filesUnder(dir: string): Map<string, string> {
  return new Map(
    readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((entry) => entry.isFile())
      .map((entry) => {
        const path = join(entry.parentPath, entry.name);
        return [path.slice(dir.length + 1), readFileSync(path, "utf8")] as const;
      })
      .sort(([a], [b]) => (a < b ? -1 : 1)),
  );
}

describe("the generated CDKTF bindings", () => {
  it("are what `npm run cdktf:generate` writes from the provider's current schema", async () => {
    const out = join(root, "regenerated");
    // As a user runs it; --out keeps the committed files as they are.
    const result = await run("npm", ["run", "--silent", "cdktf:generate", "--", "--out", out]);
    expect(result.code, result.output).toBe(0);
    const fresh = filesUnder(out);
    const committed = filesUnder(BINDINGS_DIR);
    expect([...fresh.keys()]).toContain("vm-group/index.js");
    expect([...committed.keys()], "file list differs: run `npm run cdktf:generate`").toEqual([
      ...fresh.keys(),
    ]);
    for (const [path, text] of fresh) {
      expect(committed.get(path) === text, `${path} is stale: run \`npm run cdktf:generate\``).toBe(true);
    }
  }, 150_000);

  it("are made from exactly the schema document terraform prints for the installed provider", async () => {
    const installed = await installProvider({
      mirrorDir: join(root, "mirror"),
      cliConfigFile: join(root, "terraform.rc"),
    });
    const dir = join(root, "schema");
    mkdirSync(dir);
    writeFileSync(
      join(dir, "main.tf.json"),
      JSON.stringify({
        terraform: { required_providers: { globalvm: { source: "globalvm/globalvm", version: "0.1.0" } } },
      }),
    );
    const env = terraformEnvironment(installed.cliConfigFile);
    const init = await terraform(dir, ["init", "-input=false", "-no-color"], env);
    expect(init.code, init.output).toBe(0);
    const printed = await terraform(dir, ["providers", "schema", "-json"], env);
    expect(printed.code, printed.output).toBe(0);
    const ours = providerSchemaDocument(globalvmProvider, PROVIDER_ADDRESS);
    expect(ours).toEqual(JSON.parse(printed.stdout));
    // Same keys in the same order too. Terraform's Go encoder escapes <, > and & as \u00XX.
    const asGoEncodes = JSON.stringify(ours).replace(
      /[<>&]/g,
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
    );
    expect(asGoEncodes).toBe(printed.stdout.trim());
    expect(JSON.parse(readFileSync(join(BINDINGS_DIR, "schema.json"), "utf8"))).toEqual(ours);
  }, 150_000);

  it("import as globalvm/cdktf under plain Node, flat and by namespace", async () => {
    // The package's self-reference resolves from files inside it, as the example's does.
    mkdirSync(join(REPO_ROOT, ".globalvm"), { recursive: true });
    const script = join(REPO_ROOT, ".globalvm", `cdktf-import-check-${process.pid}.mjs`);
    writeFileSync(
      script,
      `const byPath = await import(${JSON.stringify(join(BINDINGS_DIR, "index.js"))});
       const bindings = await import("globalvm/cdktf");
       console.log(JSON.stringify({
         same: bindings.VmGroup === byPath.VmGroup && bindings.vmGroup.VmGroup === bindings.VmGroup,
         types: [bindings.Image.tfResourceType, bindings.VmGroup.tfResourceType,
                 bindings.DataGlobalvmRegions.tfResourceType, bindings.GlobalvmProvider.tfResourceType,
                 bindings.Network.tfResourceType, bindings.FirewallRule.tfResourceType],
       }));`,
    );
    try {
      const result = await run(process.execPath, [script]);
      expect(result.code, result.output).toBe(0);
      expect(JSON.parse(result.output.trim().split("\n").at(-1) as string)).toEqual({
        same: true,
        types: [
          "globalvm_image",
          "globalvm_vm_group",
          "globalvm_regions",
          "globalvm",
          "globalvm_network",
          "globalvm_firewall_rule",
        ],
      });
    } finally {
      rmSync(script, { force: true });
    }
  }, 60_000);
});

describe("generator post-processing", () => {
  it("points relative imports at index.js files and leaves packages alone", () => {
    expect(withExplicitIndex("export * as image from './image';\nimport * as cdktf from 'cdktf';")).toBe(
      "export * as image from './image/index.js';\nimport * as cdktf from 'cdktf';",
    );
    expect(withExplicitIndex(`import { x } from "../provider/index.js";`)).toBe(
      `import { x } from "../provider/index.js";`,
    );
  });

  it("adds a flat export for every namespace export", () => {
    expect(withFlatExports("export * as image from './image/index.js';\n")).toBe(
      "export * as image from './image/index.js';\nexport * from './image/index.js';\n",
    );
  });
});
