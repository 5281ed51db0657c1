// globalvm_image's lifecycle under the real terraform (1.11 on PATH), against a control plane
// and one regional manager started as processes, without guests: an image with a family and
// members; a second version uploaded by changing the file; a rollback by setting
// current_version and an un-pin by removing it; versions deprecated and scheduled by
// `deprecation` blocks, shown by the globalvm_image_versions data source; the image found by
// its family; import; each apply followed by an empty plan.

import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Stack } from "../support/stack.ts";
import { startTerraformStack, terraform, terraformWorkspaces } from "../support/terraform.ts";

const root = mkdtempSync(join(tmpdir(), "globalvm-tf-image-lifecycle-"));
let stack: Stack;
let env: NodeJS.ProcessEnv = {};
const { workdir, expectSuccess, stateOf, plan, apply } = terraformWorkspaces(root, () => ({ stack, env }));

const header = `terraform {
  required_providers {
    globalvm = { source = "globalvm/globalvm", version = "0.1.0" }
  }
}
provider "globalvm" {}
`;

beforeAll(async () => {
  ({ stack, env } = await startTerraformStack(root, { name: "tf-image-lifecycle", regions: ["eu-west"] }));
}, 180_000);

afterAll(async () => {
  await stack?.stop();
  rmSync(root, { recursive: true, force: true });
});

const image = async (id: string) => (await stack.call("GET", `/v1/images/${id}`, stack.projectToken)).body;
const versions = async (id: string) =>
  (await stack.call("GET", `/v1/images/${id}/versions`, stack.projectToken)).body.items;
const iso = (text: string | null) => (text === null ? null : new Date(text).toISOString());

function imageConfig(file: string, partner: string, extra = "") {
  return `${header}
resource "globalvm_image" "web" {
  name          = "web"
  source        = "${file}"
  format        = "raw"
  origin_region = "eu-west"
  family        = "web-base"
  members       = ["${partner}"]
${extra}
}
`;
}

async function expectEmptyPlan(dir: string, after: string) {
  const result = await plan(dir);
  expect(result.code, `plan after ${after}:\n${result.output}`).toBe(0);
}

const timings: string[] = [];
async function timedApply(dir: string, what: string) {
  const result = await apply(dir);
  expectSuccess(result);
  timings.push(`${what}: ${result.elapsedMs} ms`);
  return result;
}

describe("globalvm_image's lifecycle", () => {
  it("family and members, rollback, un-pin, deprecation, data sources and import, each with an empty plan", async () => {
    const started = Date.now();
    const partner = (await stack.call("POST", "/v1/projects", stack.adminToken, { name: "partner" })).body;
    expect(partner.id).toMatch(/^prj_/);
    const dir = workdir("lifecycle", "");
    const file = join(dir, "disk.raw");
    const bytes = Buffer.alloc(2 << 20);
    randomBytes(1 << 20).copy(bytes, 0);
    writeFileSync(file, bytes);
    const write = (extra = "") => writeFileSync(join(dir, "main.tf"), imageConfig(file, partner.id, extra));
    write();
    expectSuccess(await terraform(dir, ["init", "-input=false"], env));

    // Create: the family and the members reach the control plane.
    await timedApply(dir, "create with family + members");
    const first = await stateOf(dir, "globalvm_image.web");
    expect(first).toMatchObject({
      family: "web-base",
      members: [partner.id],
      current_version: 1,
      pinned_version: null,
      version: 1,
      deprecation: [],
    });
    expect(await image(first.id)).toMatchObject({
      family: "web-base",
      members: [partner.id],
      version: 1,
      pinned_version: null,
    });
    await expectEmptyPlan(dir, "create");

    // A second version: the image follows it.
    randomBytes(64 << 10).copy(bytes, 1 << 20);
    writeFileSync(file, bytes);
    await timedApply(dir, "upload version 2");
    const second = await stateOf(dir, "globalvm_image.web");
    expect(second).toMatchObject({ current_version: 2, version: 2, pinned_version: null });
    expect(second.digest).not.toBe(first.digest);
    await expectEmptyPlan(dir, "upload of version 2");

    // Rollback: current_version = 1 pins version 1; the file is still version 2's.
    write("  current_version = 1");
    const rollbackPlan = await plan(dir);
    expect(rollbackPlan.code, rollbackPlan.output).toBe(2);
    expect(rollbackPlan.stdout).toContain("globalvm_image.web will be updated in-place");
    expect(rollbackPlan.stdout).toMatch(/current_version\s+= 2 -> 1/);
    await timedApply(dir, "rollback to version 1");
    const rolledBack = await stateOf(dir, "globalvm_image.web");
    expect(rolledBack).toMatchObject({ current_version: 1, pinned_version: 1, version: 1 });
    expect(rolledBack.digest).toBe(first.digest);
    expect(rolledBack.source_hash).toBe(second.digest);
    expect(await image(first.id)).toMatchObject({ version: 1, pinned_version: 1 });
    await expectEmptyPlan(dir, "rollback");

    // Un-pin: without current_version the image follows its newest active version again.
    write();
    const unpinPlan = await plan(dir);
    expect(unpinPlan.code, unpinPlan.output).toBe(2);
    expect(unpinPlan.stdout).toMatch(/pinned_version\s+= 1 -> null/);
    await timedApply(dir, "un-pin");
    expect(await stateOf(dir, "globalvm_image.web")).toMatchObject({
      current_version: 2,
      pinned_version: null,
      version: 2,
    });
    expect(await image(first.id)).toMatchObject({ version: 2, pinned_version: null });
    await expectEmptyPlan(dir, "un-pin");

    // Deprecation: version 1 deprecated by a time already passed and obsolete at a time to
    // come (written with an offset); version 2 deprecated later. Version 2 stays current.
    const deprecations = `
  deprecation {
    version      = 1
    deprecate_at = "2020-01-01T00:00:00Z"
    obsolete_at  = "2099-01-01T02:00:00+02:00"
  }
  deprecation {
    version      = 2
    deprecate_at = "2098-06-01T00:00:00Z"
  }`;
    write(deprecations);
    await timedApply(dir, "deprecation blocks");
    const deprecated = await stateOf(dir, "globalvm_image.web");
    expect(deprecated).toMatchObject({ current_version: 2, version: 2 });
    expect(deprecated.deprecation).toEqual([
      {
        version: 1,
        state: null,
        deprecate_at: "2020-01-01T00:00:00Z",
        obsolete_at: "2099-01-01T02:00:00+02:00",
        effective_state: "deprecated",
      },
      {
        version: 2,
        state: null,
        deprecate_at: "2098-06-01T00:00:00Z",
        obsolete_at: null,
        effective_state: "active",
      },
    ]);
    expect(
      (await versions(first.id)).map((v: any) => [
        v.version,
        v.state,
        v.deprecate_at,
        v.obsolete_at,
        v.current,
      ]),
    ).toEqual([
      [2, "active", "2098-06-01T00:00:00.000Z", null, true],
      [1, "deprecated", "2020-01-01T00:00:00.000Z", "2099-01-01T00:00:00.000Z", false],
    ]);
    await expectEmptyPlan(dir, "deprecation blocks");

    // Data sources: the image by its family, and its versions with their lifecycle.
    const data = workdir(
      "lifecycle-data",
      `${header}
data "globalvm_image" "by_family" {
  family = "web-base"
}
data "globalvm_image_versions" "web" {
  image_id = data.globalvm_image.by_family.id
}
output "image" {
  value = {
    id             = data.globalvm_image.by_family.id
    name           = data.globalvm_image.by_family.name
    family         = data.globalvm_image.by_family.family
    members        = data.globalvm_image.by_family.members
    pinned_version = data.globalvm_image.by_family.pinned_version
    version        = data.globalvm_image.by_family.version
  }
}
output "current_version" {
  value = data.globalvm_image_versions.web.current_version
}
output "versions" {
  value = data.globalvm_image_versions.web.versions
}
`,
    );
    expectSuccess(await terraform(data, ["init", "-input=false"], env));
    await timedApply(data, "data sources");
    const outputs = await terraform(data, ["output", "-json"], env);
    expectSuccess(outputs);
    const out = JSON.parse(outputs.stdout);
    expect(out.image.value).toEqual({
      id: first.id,
      name: "web",
      family: "web-base",
      members: [partner.id],
      pinned_version: null,
      version: 2,
    });
    expect(out.current_version.value).toBe(2);
    const listed = out.versions.value;
    expect(listed.map((v: any) => [v.version, v.state, v.current, v.deprecate_at, v.obsolete_at])).toEqual([
      [2, "active", true, "2098-06-01T00:00:00.000Z", null],
      [1, "deprecated", false, "2020-01-01T00:00:00.000Z", "2099-01-01T00:00:00.000Z"],
    ]);
    expect(listed.map((v: any) => [v.digest, v.size])).toEqual([
      [second.digest, bytes.length],
      [first.digest, bytes.length],
    ]);
    expect(listed.every((v: any) => typeof v.created_at === "string")).toBe(true);
    await expectEmptyPlan(data, "data sources");

    // Import into a fresh directory: the same object (times as the API writes them), and once
    // applied there (which records `source`), an empty plan.
    const fresh = workdir("lifecycle-import", imageConfig(file, partner.id, deprecations));
    expectSuccess(await terraform(fresh, ["init", "-input=false"], env));
    expectSuccess(await terraform(fresh, ["import", "-input=false", "globalvm_image.web", first.id], env));
    const imported = await stateOf(fresh, "globalvm_image.web");
    const comparable = (state: Record<string, any>) => {
      const { source: _source, timeouts: _timeouts, deprecation, ...rest } = state;
      return {
        ...rest,
        deprecation: deprecation.map((d: any) => ({
          ...d,
          deprecate_at: iso(d.deprecate_at),
          obsolete_at: iso(d.obsolete_at),
        })),
      };
    };
    expect(comparable(imported)).toEqual(comparable(await stateOf(dir, "globalvm_image.web")));
    expect(imported.source).toBeNull();
    await timedApply(fresh, "apply after import");
    await expectEmptyPlan(fresh, "apply after import");
    await expectEmptyPlan(dir, "apply in the import directory");

    // Removing the blocks makes the versions active again, with no times.
    write();
    await timedApply(dir, "deprecation blocks removed");
    expect(
      (await versions(first.id)).map((v: any) => [v.version, v.state, v.deprecate_at, v.obsolete_at]),
    ).toEqual([
      [2, "active", null, null],
      [1, "active", null, null],
    ]);
    expect((await stateOf(dir, "globalvm_image.web")).deprecation).toEqual([]);
    await expectEmptyPlan(dir, "deprecation blocks removed");

    expectSuccess(await terraform(dir, ["destroy", "-auto-approve", "-input=false"], env));
    expect((await stack.call("GET", `/v1/images/${first.id}`, stack.projectToken)).status).toBe(404);
    console.log(`image lifecycle: ${timings.join(", ")}; whole test ${Date.now() - started} ms`);
  }, 300_000);
});
