// The globalvm provider under the real terraform (1.11.4 on PATH), against a control plane
// and two regional managers (eu-west, us-east) started as child processes.
// VM group applies run in quickstart.test.ts (real guests); here the image lifecycle, data
// sources and plan-time validation; VM group create/wait edge cases run in vm-group.test.ts.

import { randomBytes } from "node:crypto";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Stack } from "../support/stack.ts";
import { startTerraformStack, type TerraformResult, terraform } from "../support/terraform.ts";

const QUICKSTART = fileURLToPath(new URL("../../examples/terraform/quickstart/main.tf", import.meta.url));
const root = mkdtempSync(join(tmpdir(), "globalvm-tf-resources-"));
let stack: Stack;
let env: NodeJS.ProcessEnv = {};

const call = (method: string, path: string, token: string, body?: unknown) =>
  stack.call(method, path, token, body);

const header = `terraform {
  required_providers {
    globalvm = { source = "globalvm/globalvm", version = "0.1.0" }
  }
}
`;

function workdir(name: string, hcl: string): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "main.tf"), header + hcl);
  return dir;
}

function expectSuccess(result: TerraformResult) {
  if (result.code !== 0) {
    throw new Error(`terraform failed (${result.code}):\n${result.output}\n${stack.logs()}`);
  }
}

async function stateOf(dir: string): Promise<Record<string, Record<string, any>>> {
  const result = await terraform(dir, ["show", "-json"], env);
  expectSuccess(result);
  const parsed = JSON.parse(result.stdout);
  return Object.fromEntries(
    (parsed.values?.root_module?.resources ?? []).map((r: any) => [r.address, r.values]),
  );
}

beforeAll(async () => {
  ({ stack, env } = await startTerraformStack(root, {
    name: "tf-resources",
    regions: ["eu-west", "us-east"],
  }));
}, 180_000);

afterAll(async () => {
  await stack?.stop();
  rmSync(root, { recursive: true, force: true });
});

describe("globalvm_image under terraform", () => {
  const imageConfig = (file: string) => `provider "globalvm" {}
resource "globalvm_image" "web" {
  name          = "web"
  source        = "${file}"
  format        = "raw"
  origin_region = "eu-west"
  labels        = { team = "infra" }
}
`;

  it("creates, stays clean, updates in place when the file changes, imports, and destroys", async () => {
    const dir = workdir("image", "");
    const file = join(dir, "disk.raw");
    const bytes = Buffer.alloc(4 << 20);
    randomBytes(3 << 20).copy(bytes, 0);
    writeFileSync(file, bytes);
    writeFileSync(join(dir, "main.tf"), header + imageConfig(file));

    expectSuccess(await terraform(dir, ["init", "-input=false"], env));
    expectSuccess(await terraform(dir, ["apply", "-auto-approve", "-input=false"], env));
    const first = (await stateOf(dir))["globalvm_image.web"] as Record<string, any>;
    expect(first).toMatchObject({ name: "web", version: 1, size: bytes.length, format: "raw" });
    expect(first.source_hash).toBe(first.digest);
    expect(first.replicas).toEqual([
      expect.objectContaining({ region: "eu-west", datacenter: "eu-west-a", state: "available" }),
    ]);
    const api = await call("GET", `/v1/images/${first.id}`, stack.projectToken);
    expect(api.body).toMatchObject({ state: "available", version: 1, labels: { team: "infra" } });

    const clean = await terraform(dir, ["plan", "-detailed-exitcode", "-input=false"], env);
    expect(clean.code, clean.output).toBe(0);

    // Change 64 KiB of the file: plan shows an in-place update, apply makes version 2.
    randomBytes(64 << 10).copy(bytes, 1 << 20);
    writeFileSync(file, bytes);
    const changed = await terraform(dir, ["plan", "-detailed-exitcode", "-input=false", "-no-color"], env);
    expect(changed.code, changed.output).toBe(2);
    expect(changed.stdout).toContain("globalvm_image.web will be updated in-place");
    expect(changed.stdout).toContain("1 to change, 0 to destroy");
    expectSuccess(await terraform(dir, ["apply", "-auto-approve", "-input=false"], env));
    const second = (await stateOf(dir))["globalvm_image.web"] as Record<string, any>;
    expect(second).toMatchObject({ id: first.id, version: 2 });
    expect(second.digest).not.toBe(first.digest);
    expect((await call("GET", `/v1/images/${first.id}`, stack.projectToken)).body.version).toBe(2);

    // Import into a fresh working directory: the same object.
    const fresh = workdir("image-import", imageConfig(file));
    expectSuccess(await terraform(fresh, ["init", "-input=false"], env));
    expectSuccess(await terraform(fresh, ["import", "-input=false", "globalvm_image.web", first.id], env));
    const imported = (await stateOf(fresh))["globalvm_image.web"] as Record<string, any>;
    const { source: _source, replicas: _r1, ...importedRest } = imported;
    const { source: _s2, replicas: _r2, ...secondRest } = second;
    expect(importedRest).toEqual(secondRest);
    expect(imported.source).toBeNull();

    expectSuccess(await terraform(dir, ["destroy", "-auto-approve", "-input=false"], env));
    expect((await call("GET", `/v1/images/${first.id}`, stack.projectToken)).status).toBe(404);
    expect((await call("GET", "/v1/images", stack.projectToken)).body.items).toEqual([]);

    // Deleted outside Terraform (here: by the destroy in the other directory) → planned for creation.
    const drift = await terraform(fresh, ["plan", "-detailed-exitcode", "-input=false", "-no-color"], env);
    expect(drift.code, drift.output).toBe(2);
    expect(drift.stdout).toContain("globalvm_image.web will be created");
  }, 240_000);
});

describe("data sources under terraform", () => {
  it("lists both regions with their datacenters and status, and finds an image by name", async () => {
    const dir = workdir(
      "data",
      `provider "globalvm" {}
data "globalvm_regions" "all" {}
output "names" { value = data.globalvm_regions.all.names }
output "status" { value = data.globalvm_regions.all.status }
output "datacenters" { value = data.globalvm_regions.all.regions[*].datacenters }
`,
    );
    expectSuccess(await terraform(dir, ["init", "-input=false"], env));
    expectSuccess(await terraform(dir, ["apply", "-auto-approve", "-input=false"], env));
    const output = await terraform(dir, ["output", "-json"], env);
    expectSuccess(output);
    const values = JSON.parse(output.stdout);
    expect(values.names.value).toEqual(["eu-west", "us-east"]);
    expect(values.datacenters.value).toEqual([["eu-west-a"], ["us-east-a"]]);
    expect(values.status.value).toEqual({ "eu-west-a": "up", "us-east-a": "up" });

    const missing = workdir(
      "data-image",
      `provider "globalvm" {}
data "globalvm_image" "x" { name = "nope" }
`,
    );
    expectSuccess(await terraform(missing, ["init", "-input=false"], env));
    const failed = await terraform(missing, ["plan", "-input=false", "-no-color"], env);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain("No such image");
    expect(failed.stderr).toContain("No image named nope.");
  }, 120_000);

  it("finds the project's default network by name, for a firewall rule on it", async () => {
    const dir = workdir(
      "data-network",
      `provider "globalvm" {}
data "globalvm_network" "default" { name = "default" }
resource "globalvm_firewall_rule" "web_http" {
  network     = data.globalvm_network.default.id
  name        = "web-http"
  action      = "allow"
  protocol    = "tcp"
  ports       = ["80"]
  source_cidr = "0.0.0.0/0"
}
output "network" { value = data.globalvm_network.default }
`,
    );
    expectSuccess(await terraform(dir, ["init", "-input=false"], env));
    expectSuccess(await terraform(dir, ["apply", "-auto-approve", "-input=false"], env));
    const output = await terraform(dir, ["output", "-json"], env);
    expectSuccess(output);
    const network = JSON.parse(output.stdout).network.value;
    const listed = await call("GET", "/v1/networks?name=default", stack.projectToken);
    const [fromApi] = listed.body.items;
    expect(network).toEqual({
      id: fromApi.id,
      name: "default",
      cidr: "10.128.0.0/9",
      subnet_prefix_length: 20,
      labels: {},
    });
    const rule = (await stateOf(dir))["globalvm_firewall_rule.web_http"] as Record<string, any>;
    expect(rule.network).toBe(fromApi.id);
    const rules = await call("GET", `/v1/networks/${fromApi.id}/firewall-rules`, stack.projectToken);
    expect(rules.body.items).toEqual([expect.objectContaining({ name: "web-http", ports: ["80"] })]);
    const clean = await terraform(dir, ["plan", "-detailed-exitcode", "-input=false"], env);
    expect(clean.code, clean.output).toBe(0);
    expectSuccess(await terraform(dir, ["destroy", "-auto-approve", "-input=false"], env));
    expect(
      (await call("GET", `/v1/networks/${fromApi.id}/firewall-rules`, stack.projectToken)).body.items,
    ).toEqual([]);

    // A name that matches nothing fails on `name`, listing the project's networks.
    const other = await call("POST", "/v1/networks", stack.projectToken, {
      name: "backend",
      cidr: "10.20.0.0/16",
    });
    expect(other.status, JSON.stringify(other.body)).toBe(201);
    try {
      const missing = workdir(
        "data-network-missing",
        `provider "globalvm" {}
data "globalvm_network" "x" {
  name = "frontend"
}
`,
      );
      expectSuccess(await terraform(missing, ["init", "-input=false"], env));
      const failed = await terraform(missing, ["plan", "-input=false", "-no-color"], env);
      expect(failed.code, failed.output).toBe(1);
      expect(failed.stderr).toContain("No such network");
      expect(failed.stderr).toContain("No network named frontend; the project's networks: backend, default.");
      expect(failed.stderr).toContain('name = "frontend"');
    } finally {
      await call("DELETE", `/v1/networks/${other.body.id}`, stack.projectToken);
    }
  }, 120_000);
});

describe("examples/terraform/quickstart", () => {
  it("is a valid configuration for this provider's schema", async () => {
    const dir = join(root, "quickstart");
    mkdirSync(dir, { recursive: true });
    copyFileSync(QUICKSTART, join(dir, "main.tf"));
    expectSuccess(await terraform(dir, ["init", "-input=false"], env));
    const result = await terraform(dir, ["validate", "-no-color"], env);
    expectSuccess(result);
    expect(result.stdout).toContain("The configuration is valid.");
  }, 60_000);
});

describe("globalvm_vm_group's exposed ports under terraform", () => {
  it("plans each expose block with its default protocol, and endpoints known after apply", async () => {
    const dir = workdir(
      "vm-group-expose",
      `provider "globalvm" {}
resource "globalvm_vm_group" "web" {
  name   = "web"
  image  = "img_0123456789abcdef"
  region = "us-east"
  size   = 1
  machine {
    vcpus     = 1
    memory_mb = 256
  }
  expose {
    port = 80
  }
  expose {
    port     = 443
    protocol = "tcp"
  }
}
`,
    );
    expectSuccess(await terraform(dir, ["init", "-input=false"], env));
    expectSuccess(await terraform(dir, ["plan", "-input=false", "-out=web.plan"], env));
    const shown = await terraform(dir, ["show", "-json", "web.plan"], env);
    expectSuccess(shown);
    const [change] = JSON.parse(shown.stdout).resource_changes;
    expect(change.change.after.expose).toEqual([
      { port: 80, protocol: "tcp" },
      { port: 443, protocol: "tcp" },
    ]);
    expect(change.change.after_unknown.endpoints).toBe(true);
    // Not set: the default, false, planned known.
    expect(change.change.after.spread_hosts).toBe(false);
  }, 60_000);
});

describe("invalid configurations fail at plan with the attribute path", () => {
  const group = (body: string) => `provider "globalvm" {}
resource "globalvm_vm_group" "app" {
  name  = "app"
  image = "img_0123456789abcdef"
${body}
}
`;
  const cases: [string, string, string[]][] = [
    [
      "size 0",
      group(`  size = 0\n  region = "us-east"\n  machine {\n    vcpus = 1\n    memory_mb = 256\n  }`),
      ["Invalid size", "size must be a whole number of at least 1", "on main.tf line", "size = 0"],
    ],
    [
      "vcpus 0",
      group(`  size = 1\n  region = "us-east"\n  machine {\n    vcpus = 0\n    memory_mb = 256\n  }`),
      ["Invalid vcpus", "vcpus = 0"],
    ],
    [
      "region and placement",
      group(
        `  size = 1\n  region = "us-east"\n  placement {\n    regions = ["eu-west"]\n  }\n  machine {\n    vcpus = 1\n    memory_mb = 256\n  }`,
      ),
      ["Conflicting placement", "Give exactly one of `region` and `placement`"],
    ],
    [
      "unknown region",
      group(`  size = 1\n  region = "mars-1"\n  machine {\n    vcpus = 1\n    memory_mb = 256\n  }`),
      ["Unknown region", "No region mars-1; known regions: eu-west, us-east.", 'region = "mars-1"'],
    ],
    [
      "missing required argument",
      group(`  region = "us-east"\n  machine {\n    vcpus = 1\n    memory_mb = 256\n  }`),
      ["Missing required argument", '"size" is required'],
    ],
    [
      "a port exposed twice",
      group(
        `  size = 1\n  region = "us-east"\n  machine {\n    vcpus = 1\n    memory_mb = 256\n  }\n  expose {\n    port = 80\n  }\n  expose {\n    port = 80\n  }`,
      ),
      ["Port exposed twice", "tcp/80 is already exposed by another expose block"],
    ],
    [
      "wrong type",
      group(`  size = "many"\n  region = "us-east"\n  machine {\n    vcpus = 1\n    memory_mb = 256\n  }`),
      ["Incorrect attribute value type", "a number is required"],
    ],
  ];

  it.each(cases)(
    "%s",
    async (name, hcl, expected) => {
      const dir = workdir(`invalid-${name.replace(/\W+/g, "-")}`, hcl);
      expectSuccess(await terraform(dir, ["init", "-input=false"], env));
      const result = await terraform(dir, ["plan", "-input=false", "-no-color"], env);
      expect(result.code, result.output).toBe(1);
      for (const text of expected) expect(result.stderr).toContain(text);
    },
    60_000,
  );

  it("an unreachable endpoint fails with one clear diagnostic", async () => {
    const closedPort = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo;
        server.close(() => resolve(port));
      });
    });
    const dir = workdir(
      "unreachable",
      `provider "globalvm" {
  endpoint = "http://127.0.0.1:${closedPort}"
  token    = "whatever"
}
data "globalvm_regions" "all" {}
`,
    );
    expectSuccess(await terraform(dir, ["init", "-input=false"], env));
    const result = await terraform(dir, ["plan", "-input=false", "-no-color"], env);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("Cannot reach the globalvm control plane");
    expect(result.stderr).toContain(`No answer from http://127.0.0.1:${closedPort} (ECONNREFUSED)`);
    expect(result.stderr.match(/^Error:/gm)).toHaveLength(1);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  }, 60_000);

  it("no endpoint at all fails with one diagnostic naming the setting", async () => {
    const dir = workdir("no-endpoint", `provider "globalvm" {}\ndata "globalvm_regions" "all" {}\n`);
    const bare = { ...env };
    delete bare.GLOBALVM_ENDPOINT;
    expectSuccess(await terraform(dir, ["init", "-input=false"], bare));
    const result = await terraform(dir, ["plan", "-input=false", "-no-color"], bare);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("No globalvm endpoint");
    expect(result.stderr).toContain("GLOBALVM_ENDPOINT");
    expect(result.stderr.match(/^Error:/gm)).toHaveLength(1);
  }, 60_000);
});

describe("globalvm_hosts under terraform", () => {
  // Last in this file: the region it adds would show in the other tests' lists of regions.
  it("lists a datacenter's hosts as its heartbeat reported them; none where the manager runs its guests", async () => {
    // A datacenter with no manager process: only this heartbeat (an admin's) names its hosts.
    const admin = stack.adminToken;
    expect((await call("POST", "/v1/regions", admin, { name: "ap-south" })).status).toBe(201);
    const capacity = { vcpus: 8, memory_mb: 16_384, disk_bytes: 100e9 };
    expect(
      (await call("POST", "/v1/datacenters", admin, { name: "ap-south-a", region: "ap-south", capacity }))
        .status,
    ).toBe(201);
    const host = (name: string, free_vcpus: number) => ({
      name,
      state: "up",
      arch: "x86_64",
      capacity: { vcpus: 4, memory_mb: 8192, disk_bytes: 50e9 },
      free: { vcpus: free_vcpus, memory_mb: 6144, disk_bytes: 40e9 },
      instance_count: 4 - free_vcpus,
      cached_versions: 1,
      cache_bytes: 1 << 20,
      last_seen_at: new Date().toISOString(),
    });
    const beat = await call("POST", "/v1/datacenters/ap-south-a/heartbeat", admin, {
      manager_url: "http://127.0.0.1:9",
      capacity,
      free: capacity,
      chunk_count: 0,
      image_count: 0,
      hosts: [host("host-b", 3), host("host-a", 1)],
    });
    expect(beat.status, JSON.stringify(beat.body)).toBe(200);
    const dir = workdir(
      "data-hosts",
      `provider "globalvm" {}
data "globalvm_hosts" "ap" { datacenter = "ap-south-a" }
data "globalvm_hosts" "eu" { datacenter = "eu-west-a" }
output "ap" { value = data.globalvm_hosts.ap.hosts }
output "eu" { value = data.globalvm_hosts.eu.hosts }
`,
    );
    expectSuccess(await terraform(dir, ["init", "-input=false"], env));
    expectSuccess(await terraform(dir, ["apply", "-auto-approve", "-input=false"], env));
    const output = await terraform(dir, ["output", "-json"], env);
    expectSuccess(output);
    const values = JSON.parse(output.stdout);
    expect(values.ap.value).toEqual(
      [
        ["host-a", 1],
        ["host-b", 3],
      ].map(([name, free]) => ({
        name,
        state: "up",
        arch: "x86_64",
        vcpus: 4,
        memory_mb: 8192,
        disk_bytes: 50e9,
        free_vcpus: free,
        free_memory_mb: 6144,
        instance_count: 4 - (free as number),
        cached_versions: 1,
      })),
    );
    expect(values.eu.value).toEqual([]);

    const missing = workdir(
      "data-hosts-missing",
      `provider "globalvm" {}
data "globalvm_hosts" "x" {
  datacenter = "mars-a"
}
`,
    );
    expectSuccess(await terraform(missing, ["init", "-input=false"], env));
    const failed = await terraform(missing, ["plan", "-input=false", "-no-color"], env);
    expect(failed.code, failed.output).toBe(1);
    expect(failed.stderr).toContain("No such datacenter");
    expect(failed.stderr).toContain('datacenter = "mars-a"');
  }, 120_000);
});
