// cdktf is archived upstream; cdktn is its community continuation. The example, with the very
// same generated bindings, synthesizes the same cdk.tf.json on cdktn's runtime as on cdktf's:
// a loader resolves every "cdktf" import to "cdktn" (test/cdktf/cdktn-loader.ts).

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const REPO_ROOT = resolve(import.meta.dirname, "../..");
const root = mkdtempSync(join(tmpdir(), "globalvm-cdktn-"));

afterAll(() => rmSync(root, { recursive: true, force: true }));

function synthesize(outdir: string, nodeOptions: string[]): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, [...nodeOptions, "examples/cdktf/main.ts"], {
    cwd: REPO_ROOT,
    env: { ...process.env, CDKTF_OUTDIR: outdir, CHECKPOINT_DISABLE: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => {
    output += chunk;
  });
  child.stderr.on("data", (chunk: Buffer) => {
    output += chunk;
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  return new Promise((done, fail) => {
    child.once("error", fail);
    child.once("close", (code) => {
      clearTimeout(timer);
      done({ code, output });
    });
  });
}

const stackFile = (outdir: string) =>
  JSON.parse(readFileSync(join(outdir, "stacks", "globalvm", "cdk.tf.json"), "utf8"));

/** The "//" metadata names the version of the library that synthesized the file. */
function withoutLibraryVersion(document: any) {
  const { version, ...metadata } = document["//"].metadata;
  return { version, document: { ...document, "//": { ...document["//"], metadata } } };
}

describe("the generated bindings on cdktn", () => {
  it("synthesize the example to the same cdk.tf.json as on cdktf", async () => {
    const onCdktf = join(root, "cdktf.out");
    const onCdktn = join(root, "cdktn.out");
    const [cdktf, cdktn] = await Promise.all([
      synthesize(onCdktf, []),
      synthesize(onCdktn, ["--import", join(REPO_ROOT, "test/cdktf/cdktn-loader.ts")]),
    ]);
    expect(cdktf.code, cdktf.output).toBe(0);
    expect(cdktn.code, cdktn.output).toBe(0);
    const fromCdktf = withoutLibraryVersion(stackFile(onCdktf));
    const fromCdktn = withoutLibraryVersion(stackFile(onCdktn));
    const installed = (name: string) =>
      JSON.parse(readFileSync(join(REPO_ROOT, "node_modules", name, "package.json"), "utf8")).version;
    // Each runtime really did the synthesis: the stamp is its own version.
    expect(fromCdktf.version).toBe(installed("cdktf"));
    expect(fromCdktn.version).toBe(installed("cdktn"));
    expect(fromCdktn.version).not.toBe(fromCdktf.version);
    expect(fromCdktn.document).toEqual(fromCdktf.document);
    expect(Object.keys(fromCdktf.document.resource).sort()).toEqual([
      "globalvm_firewall_rule",
      "globalvm_image",
      "globalvm_network",
      "globalvm_vm_group",
    ]);
  }, 90_000);
});
