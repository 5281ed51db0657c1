// globalvm vm-group show and create against a control plane served on loopback (real HTTP, real
// catalog): a group's exposed ports and the endpoints its datacenter's manager reported, a
// regional group's datacenters, and what create sends and refuses.

import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { instances, vmGroups } from "../../api/catalog/schema.ts";
import { newId } from "../../api/ids.ts";
import { createTestApi, serveOnLoopback, type TestApi } from "../support/api.ts";
import { runCli } from "../support/cli.ts";

let api: TestApi;
let server: Awaited<ReturnType<typeof serveOnLoopback>>;
let env: Record<string, string>;
/** The project's read-write token: create declares a group. */
let writeEnv: Record<string, string>;

beforeAll(async () => {
  api = await createTestApi("pglite");
  await api.createRegion("us-east");
  const project = await api.createProject("acme");
  const image = await api.expectStatus(201, "POST", "/v1/images", {
    token: project.token,
    body: { name: "web", origin_region: "us-east" },
  });
  const created = await api.expectStatus(202, "POST", "/v1/vm-groups", {
    token: project.token,
    body: {
      name: "web",
      image: image.id,
      region: "us-east",
      size: 1,
      machine: { vcpus: 1, memory_mb: 128 },
      expose: [{ port: 80 }, { port: 443 }],
    },
  });
  const instanceId = newId("instance");
  await api.catalog.db
    .insert(instances)
    .values({ id: instanceId, vmGroupId: created.target.id, ordinal: 0, datacenter: "us-east-a" });
  const manager = await api.expectStatus(201, "POST", "/v1/manager-credentials", {
    body: { region: "us-east", datacenter: "us-east-a" },
  });
  await api.expectStatus(204, "PUT", `/v1/datacenters/us-east-a/instances/${instanceId}`, {
    token: manager.secret,
    body: {
      state: "ready",
      host: "host-2",
      endpoints: [{ port: 80, protocol: "tcp", address: "127.0.0.1:30001" }],
    },
  });
  // A regional group over two datacenters of us-east, as its create recorded it.
  const regional = await api.expectStatus(202, "POST", "/v1/vm-groups", {
    token: project.token,
    body: {
      name: "spread",
      image: image.id,
      region: "us-east",
      distribution: "even",
      size: 2,
      machine: { vcpus: 1, memory_mb: 128 },
    },
  });
  await api.catalog.db
    .update(vmGroups)
    .set({ datacenters: ["us-east-a", "us-east-b"] })
    .where(eq(vmGroups.id, regional.target.id));
  server = await serveOnLoopback(api);
  env = { GLOBALVM_ENDPOINT: server.url, GLOBALVM_TOKEN: project.readToken };
  writeEnv = { GLOBALVM_ENDPOINT: server.url, GLOBALVM_TOKEN: project.token };
});

afterAll(async () => {
  await server?.close();
  await api?.close();
});

describe("globalvm vm-group show", () => {
  it("prints a line per exposed port: its endpoint, or that it has none yet", async () => {
    const result = await runCli(["vm-group", "show", "web"], env);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.split("\n").filter((line) => line.startsWith("endpoint"))).toEqual([
      "endpoint:     80/tcp  tcp://127.0.0.1:30001  (us-east-a)",
      "endpoint:     443/tcp  not reachable yet",
    ]);
  });

  it("says whether the group spreads over hosts, and which host runs each instance", async () => {
    const result = await runCli(["vm-group", "show", "web"], env);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^spread hosts: no$/m);
    const lines = result.stdout.split("\n");
    const header = lines.findIndex((line) => line.startsWith("NAME"));
    expect(lines[header]).toMatch(/^NAME\s+ID\s+DATACENTER\s+HOST\s+STATE\s+NETWORK IP\s+ADDRESS$/);
    expect(lines[header + 1]?.split(/\s+/)).toEqual([
      "web-0",
      expect.stringMatching(/^ins_/),
      "us-east-a",
      "host-2",
      "ready",
      "-",
      "-",
    ]);
  });

  it("shows a regional group's distribution and the datacenters it spans, in show and ls", async () => {
    const shown = await runCli(["vm-group", "show", "spread"], env);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(/^placement:\s+us-east \(even\)$/m);
    expect(shown.stdout).toMatch(/^datacenters:\s+us-east-a,us-east-b$/m);
    const listed = await runCli(["vm-group", "ls"], env);
    expect(listed.code, listed.stderr).toBe(0);
    const row = listed.stdout.split("\n").find((line) => line.startsWith("spread "));
    expect(row?.split(/\s+/)).toEqual([
      "spread",
      expect.stringMatching(/^vmg_/),
      "us-east",
      "(even)",
      "us-east-a,us-east-b",
      "2",
      "pending",
    ]);
  });

  it("--json has the group's expose and endpoints as the API answers them", async () => {
    const result = await runCli(["vm-group", "show", "web", "--json"], env);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({
      expose: [
        { port: 80, protocol: "tcp" },
        { port: 443, protocol: "tcp" },
      ],
      endpoints: [{ port: 80, protocol: "tcp", address: "127.0.0.1:30001", url: "tcp://127.0.0.1:30001" }],
      spread_hosts: false,
      instances: [expect.objectContaining({ host: "host-2" })],
    });
  });
});

describe("globalvm vm-group create", () => {
  it("declares a regional group with --distribution, the image named by name", async () => {
    const args = ["vm-group", "create", "regional", "--image", "web", "--region", "us-east", "--size", "3"];
    const result = await runCli([...args, "--distribution", "any", "--vcpus", "2"], writeEnv);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(
      /^declared VM group regional \(vmg_\w+\) over the datacenters of us-east \(any\): operation op_\w+ places and starts it/,
    );
    const listed = await runCli(["vm-group", "ls", "--json"], env);
    expect(JSON.parse(listed.stdout).find((g: { name: string }) => g.name === "regional")).toMatchObject({
      region: "us-east",
      distribution: "any",
      datacenter: null,
      datacenters: [],
      size: 3,
      machine: { vcpus: 2, memory_mb: 256 },
      spread_hosts: false,
    });
    // Without --distribution: a group in one datacenter; --json prints the operation.
    const single = await runCli(
      ["vm-group", "create", "single", "--image", "web", "--region", "us-east", "--size", "1", "--json"],
      writeEnv,
    );
    expect(single.code, single.stderr).toBe(0);
    const operation = JSON.parse(single.stdout);
    expect(operation).toMatchObject({ kind: "create-vm-group", target: { type: "vm-group" } });
    const shown = await runCli(["vm-group", "show", operation.target.id, "--json"], env);
    expect(JSON.parse(shown.stdout)).toMatchObject({ name: "single", distribution: null });
  });

  it("refuses a distribution other than even or any, naming the flag, before any call", async () => {
    const result = await runCli(
      [
        "vm-group",
        "create",
        "bad",
        "--image",
        "web",
        "--region",
        "us-east",
        "--size",
        "2",
        "--distribution",
        "round-robin",
      ],
      // Nothing listens there: the flag is refused first.
      { GLOBALVM_ENDPOINT: "http://127.0.0.1:1", GLOBALVM_TOKEN: "t" },
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("--distribution must be even or any, not 'round-robin'");
    expect(result.stdout).toBe("");
  });

  it("names a missing or malformed flag, and passes on the API's refusals", async () => {
    const noSize = await runCli(
      ["vm-group", "create", "x", "--image", "web", "--region", "us-east"],
      writeEnv,
    );
    expect([noSize.code, noSize.stderr]).toEqual([2, expect.stringContaining("--size is required")]);
    const args = ["vm-group", "create", "x", "--image", "web", "--region", "us-east", "--size", "2"];
    const badVcpus = await runCli([...args, "--vcpus", "two"], writeEnv);
    expect([badVcpus.code, badVcpus.stderr]).toEqual([
      2,
      expect.stringContaining("--vcpus must be a whole number, not 'two'"),
    ]);
    const noImage = await runCli([...args.slice(0, 3), "--image", "nope", ...args.slice(5)], writeEnv);
    expect([noImage.code, noImage.stderr]).toEqual([
      1,
      expect.stringContaining("no image nope in this project"),
    ]);
    // The API's check: 1000 instances at most, named by its field.
    const tooMany = await runCli([...args.slice(0, -1), "1001"], writeEnv);
    expect(tooMany.code).toBe(1);
    expect(tooMany.stderr).toContain("size");
  });
});
