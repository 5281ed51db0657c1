// The control plane as a user runs it: `globalvm serve control-plane`, spoken to over real HTTP.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createTestDatabaseUrl } from "../support/catalogs.ts";
import { type RunningProcess, startCli } from "../support/processes.ts";
import { strongSecret } from "../support/secrets.ts";

const started: RunningProcess[] = [];
const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(started.map((p) => p.stop("SIGKILL")));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function serve(args: string[], env: Record<string, string | undefined> = {}) {
  const process = startCli(["serve", "control-plane", "--port", "0", ...args], env);
  started.push(process);
  const [, url] = await process.waitFor(/control plane on (http:\/\/\S+)/, 60_000);
  return { process, url: url as string };
}

async function http(url: string, method: string, token: string | null, body?: unknown) {
  const response = await fetch(url, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body ? { "content-type": "application/json" } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: response.status, body: (await response.json()) as any };
}

/** The Done-when walk of the foundation issue, as curl would do it. */
async function adminAndProjectFlow(url: string, adminToken: string) {
  const project = await http(`${url}/v1/projects`, "POST", adminToken, { name: "acme" });
  expect(project.status).toBe(201);
  const token = await http(`${url}/v1/projects/${project.body.id}/tokens`, "POST", adminToken, {
    name: "ci",
  });
  expect(token.status).toBe(201);
  for (const region of ["eu-west", "us-east"]) {
    expect((await http(`${url}/v1/regions`, "POST", adminToken, { name: region })).status).toBe(201);
    const dc = await http(`${url}/v1/datacenters`, "POST", adminToken, {
      name: `${region}-a`,
      region,
      capacity: { vcpus: 4, memory_mb: 8192, disk_bytes: 1e10 },
    });
    expect(dc.status).toBe(201);
  }
  const secret = token.body.secret as string;
  const image = await http(`${url}/v1/images`, "POST", secret, { name: "web", origin_region: "eu-west" });
  expect(image.status).toBe(201);
  expect((await http(`${url}/v1/images`, "GET", secret)).body.items).toHaveLength(1);
  expect((await http(`${url}/v1/images/${image.body.id}`, "GET", secret)).status).toBe(200);
  const group = await http(`${url}/v1/vm-groups`, "POST", secret, {
    name: "web",
    image: image.body.id,
    region: "us-east",
    size: 2,
    machine: { vcpus: 1, memory_mb: 256 },
  });
  expect(group.status).toBe(202);
  expect(group.body.kind).toBe("create-vm-group");
  expect((await http(`${url}/v1/vm-groups/${group.body.target.id}`, "GET", secret)).body.name).toBe("web");
  return secret;
}

describe("globalvm serve control-plane", () => {
  it("on embedded PGlite: prints a generated admin token once, serves the API, and keeps state across restarts", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "globalvm-cp-"));
    dirs.push(dataDir);
    const first = await serve(["--data-dir", dataDir], {
      GLOBALVM_ADMIN_TOKEN: undefined,
      DATABASE_URL: undefined,
    });
    const [, adminToken] = await first.process.waitFor(/admin token \(shown once, keep it\): (\S+)/);
    expect((await http(`${first.url}/readyz`, "GET", null)).body).toEqual({
      status: "ok",
      database: "pglite",
    });
    expect((await fetch(`${first.url}/docs`)).status).toBe(200);
    expect((await http(`${first.url}/openapi.json`, "GET", null)).body.openapi).toBe("3.1.0");
    const projectToken = await adminAndProjectFlow(first.url, adminToken as string);
    expect(await first.process.stop("SIGTERM")).toBe(0);

    const second = await serve(["--data-dir", dataDir], {
      GLOBALVM_ADMIN_TOKEN: undefined,
      DATABASE_URL: undefined,
    });
    expect(second.process.output()).not.toContain("shown once");
    const images = await http(`${second.url}/v1/images`, "GET", projectToken);
    expect(images.body.items.map((i: { name: string }) => i.name)).toEqual(["web"]);
    expect((await http(`${second.url}/v1/projects`, "GET", adminToken as string)).status).toBe(200);
  }, 120_000);

  it("on Postgres via DATABASE_URL, with GLOBALVM_ADMIN_TOKEN", async () => {
    const databaseUrl = await createTestDatabaseUrl();
    const adminToken = strongSecret("postgres-admin-");
    const { url, process } = await serve([], {
      DATABASE_URL: databaseUrl,
      GLOBALVM_ADMIN_TOKEN: adminToken,
      GLOBALVM_SIGNING_KEY_SECRET: strongSecret(),
    });
    expect(process.output()).not.toContain("shown once");
    expect((await http(`${url}/readyz`, "GET", null)).body).toEqual({ status: "ok", database: "postgres" });
    await adminAndProjectFlow(url, adminToken);
  }, 120_000);

  it("`globalvm migrate` brings a Postgres catalog up to date and says so", async () => {
    const databaseUrl = await createTestDatabaseUrl();
    const migrate = startCli(["migrate"], { DATABASE_URL: databaseUrl });
    started.push(migrate);
    await migrate.waitFor(/catalog migrated \(postgres\)/);
    expect(await migrate.exited()).toBe(0);
  });

  const metricsDir = () => {
    const dir = mkdtempSync(join(tmpdir(), "globalvm-metrics-"));
    dirs.push(dir);
    return dir;
  };

  it("--metrics-public serves /metrics without a token; a misspelt GLOBALVM_METRICS_PUBLIC stops the start", async () => {
    const env = { GLOBALVM_ADMIN_TOKEN: strongSecret("metrics-admin-"), GLOBALVM_METRICS_PUBLIC: undefined };
    const closed = await serve(["--data-dir", metricsDir()], env);
    expect((await fetch(`${closed.url}/metrics`)).status).toBe(401);
    const open = await serve(["--data-dir", metricsDir(), "--metrics-public"], env);
    const scrape = await fetch(`${open.url}/metrics`);
    expect(scrape.status).toBe(200);
    expect(await scrape.text()).toContain("globalvm_http_requests_total");
    const misspelt = startCli(["serve", "control-plane", "--port", "0", "--data-dir", metricsDir()], {
      ...env,
      GLOBALVM_METRICS_PUBLIC: "ye",
    });
    started.push(misspelt);
    await misspelt.waitFor(/GLOBALVM_METRICS_PUBLIC must be 1, true or yes/);
    expect(await misspelt.exited()).toBe(1);
  }, 120_000);

  it("a bad flag exits 2 with usage", async () => {
    const bad = startCli(["serve", "control-plane", "--port", "seventy"]);
    started.push(bad);
    await bad.waitFor(/--port must be/);
    expect(await bad.exited()).toBe(2);
  });
});

describe("one process per embedded catalog", () => {
  it("a second control plane on the same data dir refuses to start and names the first", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "globalvm-lock-"));
    const lockAdminToken = strongSecret("lock-admin-");
    dirs.push(dataDir);
    const first = await serve(["--data-dir", dataDir], {
      GLOBALVM_ADMIN_TOKEN: lockAdminToken,
    });
    const second = startCli(["serve", "control-plane", "--port", "0", "--data-dir", dataDir]);
    started.push(second);
    await second.waitFor(new RegExp(`in use by process ${first.process.child.pid}`));
    expect(await second.exited()).toBe(1);
    // The first one keeps serving, and after it stops the directory can be opened again.
    expect((await http(`${first.url}/readyz`, "GET", null)).status).toBe(200);
    expect(await first.process.stop("SIGTERM")).toBe(0);
    const third = await serve(["--data-dir", dataDir], {
      GLOBALVM_ADMIN_TOKEN: lockAdminToken,
    });
    expect((await http(`${third.url}/readyz`, "GET", null)).status).toBe(200);
  }, 120_000);
});
