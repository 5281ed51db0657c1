// globalvm hosts against a control plane served on loopback (real HTTP, real catalog): the hosts
// each datacenter's manager reported in its heartbeat, one datacenter or all of them.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestApi, serveOnLoopback, type TestApi } from "../support/api.ts";
import { runCli } from "../support/cli.ts";

let api: TestApi;
let server: Awaited<ReturnType<typeof serveOnLoopback>>;
let env: Record<string, string>;

const capacity = { vcpus: 8, memory_mb: 16_384, disk_bytes: 100e9 };
const host = (name: string, freeVcpus: number, more: Record<string, unknown> = {}) => ({
  name,
  state: "up",
  arch: "x86_64",
  capacity: { vcpus: 4, memory_mb: 8192, disk_bytes: 64 * 2 ** 30 },
  free: { vcpus: freeVcpus, memory_mb: 4096, disk_bytes: 32 * 2 ** 30 },
  instance_count: 4 - freeVcpus,
  cached_versions: 2,
  cache_bytes: 3 * 2 ** 20,
  last_seen_at: "2026-01-02T03:04:05.000Z",
  ...more,
});

beforeAll(async () => {
  api = await createTestApi("pglite");
  await api.createRegion("us-east");
  await api.createRegion("eu-west");
  const project = await api.createProject("acme");
  const beat = (datacenter: string, hosts?: unknown[]) =>
    api.expectStatus(200, "POST", `/v1/datacenters/${datacenter}/heartbeat`, {
      body: {
        manager_url: "http://127.0.0.1:9001",
        capacity,
        free: capacity,
        chunk_count: 0,
        image_count: 0,
        ...(hosts ? { hosts } : {}),
      },
    });
  await beat("us-east-a", [host("host-b", 3), host("host-a", 1, { arch: "aarch64" })]);
  await beat("eu-west-a");
  server = await serveOnLoopback(api);
  env = { GLOBALVM_ENDPOINT: server.url, GLOBALVM_TOKEN: project.readToken };
});

afterAll(async () => {
  await server?.close();
  await api?.close();
});

const rows = (stdout: string) =>
  stdout
    .trim()
    .split("\n")
    .map((line) => line.split(/\s{2,}/));

describe("globalvm hosts", () => {
  it("--datacenter lists that datacenter's hosts: state, free of capacity, guests, cache", async () => {
    const result = await runCli(["hosts", "--datacenter", "us-east-a"], env);
    expect(result.code, result.stderr).toBe(0);
    expect(rows(result.stdout)).toEqual([
      [
        "DATACENTER",
        "HOST",
        "STATE",
        "ARCH",
        "FREE VCPUS",
        "FREE MEMORY",
        "FREE DISK",
        "INSTANCES",
        "CACHED VERSIONS",
        "LAST SEEN",
      ],
      [
        "us-east-a",
        "host-a",
        "up",
        "aarch64",
        "1/4",
        "4.0 GiB/8.0 GiB",
        "32 GiB/64 GiB",
        "3",
        "2 (3.0 MiB)",
        "2026-01-02T03:04:05.000Z",
      ],
      [
        "us-east-a",
        "host-b",
        "up",
        "x86_64",
        "3/4",
        "4.0 GiB/8.0 GiB",
        "32 GiB/64 GiB",
        "1",
        "2 (3.0 MiB)",
        "2026-01-02T03:04:05.000Z",
      ],
    ]);
  });

  it("lists every datacenter region by region, one with no host agents as a line of its own", async () => {
    const result = await runCli(["hosts"], env);
    expect(result.code, result.stderr).toBe(0);
    expect(rows(result.stdout).map((row) => row.slice(0, 3))).toEqual([
      ["DATACENTER", "HOST", "STATE"],
      ["eu-west-a", "-", "-"],
      ["us-east-a", "host-a", "up"],
      ["us-east-a", "host-b", "up"],
    ]);
  });

  it("--json prints the hosts as the API answers them", async () => {
    const result = await runCli(["hosts", "--json"], env);
    expect(result.code, result.stderr).toBe(0);
    const hosts = JSON.parse(result.stdout);
    expect(hosts.map((h: { datacenter: string; name: string }) => `${h.datacenter}/${h.name}`)).toEqual([
      "us-east-a/host-a",
      "us-east-a/host-b",
    ]);
    expect(hosts[1]).toEqual({ ...host("host-b", 3), datacenter: "us-east-a" });
  });

  it("an unknown datacenter fails with exit 1 and says where to look", async () => {
    const result = await runCli(["hosts", "--datacenter", "mars-a"], env);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("no datacenter mars-a");
    expect(result.stderr).toContain("globalvm regions");
  });
});
