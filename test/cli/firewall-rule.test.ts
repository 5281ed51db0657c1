// globalvm firewall-rule ls | create | delete against a control plane served on loopback.
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
    body: { name: "backend", cidr: "10.20.0.0/16" },
  });
  server = await serveOnLoopback(api);
  env = { GLOBALVM_ENDPOINT: server.url, GLOBALVM_TOKEN: project.token };
});

afterAll(async () => {
  await server?.close();
  await api?.close();
});

describe("globalvm firewall-rule", () => {
  it("creates rules, lists them in evaluation order, and deletes one by name", async () => {
    const web = await runCli(
      [
        "firewall-rule",
        "create",
        "backend",
        "web",
        "--action",
        "allow",
        "--protocol",
        "tcp",
        "--ports",
        "80,8000-8080",
        "--source-cidr",
        "0.0.0.0/0",
      ],
      env,
    );
    expect(web.code, web.stderr).toBe(0);
    expect(web.stdout).toMatch(
      /^created web \(fwr_\w+\) in backend: allow tcp 80,8000-8080 from 0\.0\.0\.0\/0, priority 1000$/m,
    );
    const deny = await runCli(
      [
        "firewall-rule",
        "create",
        "backend",
        "no-batch",
        "--action",
        "deny",
        "--protocol",
        "all",
        "--source-vm-group",
        "batch",
        "--priority",
        "10",
        "--json",
      ],
      env,
    );
    expect(deny.code, deny.stderr).toBe(0);
    expect(JSON.parse(deny.stdout)).toMatchObject({
      name: "no-batch",
      priority: 10,
      source: { vm_group: "batch" },
    });

    const listed = await runCli(["firewall-rule", "ls", "backend"], env);
    expect(listed.code, listed.stderr).toBe(0);
    const lines = listed.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^PRIORITY\s+NAME\s+ACTION\s+PROTOCOL\s+PORTS\s+SOURCE\s+ID$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/).slice(0, 6))).toEqual([
      ["10", "no-batch", "deny", "all", "all", "vm-group:batch"],
      ["1000", "web", "allow", "tcp", "80,8000-8080", "0.0.0.0/0"],
    ]);

    const deleted = await runCli(["firewall-rule", "delete", "backend", "no-batch"], env);
    expect(deleted.code, deleted.stderr).toBe(0);
    const after = JSON.parse((await runCli(["firewall-rule", "ls", "backend", "--json"], env)).stdout);
    expect(after.map((r: { name: string }) => r.name)).toEqual(["web"]);
  });

  it("names what is wrong: a missing flag (exit 2), a bad value the API refuses, an unknown rule (exit 1)", async () => {
    const noSource = await runCli(
      ["firewall-rule", "create", "backend", "x", "--action", "allow", "--protocol", "tcp"],
      env,
    );
    expect(noSource.code).toBe(2);
    expect(noSource.stderr).toContain("--source-cidr");
    const badPorts = await runCli(
      [
        "firewall-rule",
        "create",
        "backend",
        "x",
        "--action",
        "allow",
        "--protocol",
        "icmp",
        "--ports",
        "80",
        "--source-cidr",
        "10.0.0.0/8",
      ],
      env,
    );
    expect(badPorts.code).toBe(1);
    expect(badPorts.stderr).toContain("ports");
    const unknown = await runCli(["firewall-rule", "delete", "backend", "nothing"], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("no firewall rule nothing in network backend");
    const noNetwork = await runCli(["firewall-rule", "ls", "nowhere"], env);
    expect(noNetwork.code).toBe(1);
    expect(noNetwork.stderr).toContain("globalvm network ls");
  });
});
