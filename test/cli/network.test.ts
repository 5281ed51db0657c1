// globalvm network ls | show against a control plane served on loopback (real HTTP, real catalog).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestApi, serveOnLoopback, type TestApi } from "../support/api.ts";
import { runCli } from "../support/cli.ts";

let api: TestApi;
let server: Awaited<ReturnType<typeof serveOnLoopback>>;
let env: Record<string, string>;

beforeAll(async () => {
  api = await createTestApi("pglite");
  const project = await api.createProject("acme");
  await api.expectStatus(201, "POST", "/v1/networks", {
    token: project.token,
    body: { name: "backend", cidr: "10.20.0.0/16", labels: { team: "db" } },
  });
  server = await serveOnLoopback(api);
  env = { GLOBALVM_ENDPOINT: server.url, GLOBALVM_TOKEN: project.readToken };
});

afterAll(async () => {
  await server?.close();
  await api?.close();
});

describe("globalvm network", () => {
  it("ls lists every network with its range and subnet size", async () => {
    const result = await runCli(["network", "ls"], env);
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^NAME\s+ID\s+CIDR\s+SUBNETS\s+LABELS$/);
    expect(lines.slice(1).map((line) => line.split(/\s+/).filter((_, i) => i !== 1))).toEqual([
      ["default", "10.128.0.0/9", "/20", "-"],
      ["backend", "10.20.0.0/16", "/24", "team=db"],
    ]);
  });

  it("show finds a network by name or ID, as text or JSON", async () => {
    const json = await runCli(["network", "show", "backend", "--json"], env);
    expect(json.code, json.stderr).toBe(0);
    const network = JSON.parse(json.stdout);
    expect(network).toMatchObject({ name: "backend", cidr: "10.20.0.0/16", subnet_prefix_length: 24 });
    const text = await runCli(["network", "show", network.id], env);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^cidr:\s+10\.20\.0\.0\/16$/m);
    expect(text.stdout).toMatch(
      /^firewall:\s+0 rules \(globalvm firewall-rule ls backend\); what none matches is denied$/m,
    );
    const fallback = await runCli(["network", "show", "default"], env);
    expect(fallback.stdout).toMatch(/what none matches is allowed between the network's own instances/);
  });

  it("show of an unknown network fails with exit 1 and says where to look", async () => {
    const result = await runCli(["network", "show", "nowhere"], env);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("no network nowhere in this project");
    expect(result.stderr).toContain("globalvm network ls");
  });
});
