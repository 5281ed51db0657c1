// A real Prometheus (Debian's `prometheus` package, installed by .ci/run, nothing fetched at
// run time) scrapes a running stack every second: the control plane with a token of the
// `metrics` scope, each regional manager with its GLOBALVM_MANAGER_METRICS_TOKEN. After a real
// cross-region create (the image in eu-west, the VM group in us-east, so the image moves), its
// HTTP API answers a transfer's bytes (what us-east received from eu-west, as the operation
// reports them) and the create's duration histogram.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { uploadImage } from "../../client/upload.ts";
import { ensureGuestImage } from "../support/compute.ts";
import { strongSecret } from "../support/secrets.ts";
import { type Stack, startStack } from "../support/stack.ts";

const PROMETHEUS = "/usr/bin/prometheus";
const MANAGER_TOKEN = strongSecret("manager-metrics-");

let stack: Stack;
let dir: string;
let prometheus: ChildProcess | undefined;
let prometheusUrl: string;

/** A loopback port free now (Prometheus cannot listen on port 0 and tell which it got). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (typeof address !== "object" || !address) throw new Error("no port");
  return address.port;
}

function prometheusLog(): string {
  try {
    return readFileSync(join(dir, "prometheus.log"), "utf8").slice(-3000);
  } catch {
    return "";
  }
}

/** One instant query's samples: labels and value. */
async function query(expression: string): Promise<{ metric: Record<string, string>; value: number }[]> {
  const url = `${prometheusUrl}/api/v1/query?query=${encodeURIComponent(expression)}`;
  const answer = (await (await fetch(url, { signal: AbortSignal.timeout(5000) })).json()) as {
    status: string;
    data: { result: { metric: Record<string, string>; value: [number, string] }[] };
  };
  if (answer.status !== "success") throw new Error(`query ${expression}: ${JSON.stringify(answer)}`);
  return answer.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
}

/** Asks until `accept` holds for the answer (Prometheus scrapes every second), or fails with it. */
async function eventually<T>(ask: () => Promise<T>, accept: (value: T) => boolean, what: string): Promise<T> {
  const deadline = Date.now() + 30_000;
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await ask().catch(() => undefined);
    if (last !== undefined && accept(last)) return last;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new Error(`${what}: last answer ${JSON.stringify(last)}\n${prometheusLog()}\n${stack.logs()}`);
}

beforeAll(async () => {
  execFileSync(PROMETHEUS, ["--version"], { stdio: "ignore" }); // installed, or fail here clearly
  dir = mkdtempSync(join(tmpdir(), "metrics-prometheus-"));
  stack = await startStack({
    name: "prometheus",
    regions: ["eu-west", "us-east"],
    env: { GLOBALVM_MANAGER_METRICS_TOKEN: MANAGER_TOKEN },
  });
  const projects = (await stack.call("GET", "/v1/projects", stack.adminToken)).body.items;
  const project = projects.find((p: { name: string }) => p.name === "acme");
  const token = await stack.call("POST", `/v1/projects/${project.id}/tokens`, stack.adminToken, {
    name: "prometheus",
    scopes: ["metrics"],
  });
  expect(token.status).toBe(201);
  const hostOf = (url: string) => new URL(url).host;
  const config = [
    "global:",
    "  scrape_interval: 1s",
    "  scrape_timeout: 1s",
    "  evaluation_interval: 1s",
    "scrape_configs:",
    "  - job_name: control-plane",
    `    bearer_token: ${JSON.stringify(token.body.secret)}`,
    "    static_configs:",
    `      - targets: [${JSON.stringify(hostOf(stack.controlPlane))}]`,
    "  - job_name: regional-managers",
    `    bearer_token: ${JSON.stringify(MANAGER_TOKEN)}`,
    "    static_configs:",
    `      - targets: [${Object.values(stack.managerUrls)
      .map((url) => JSON.stringify(hostOf(url)))
      .join(", ")}]`,
    "",
  ].join("\n");
  writeFileSync(join(dir, "prometheus.yml"), config, { mode: 0o600 });
  const port = await freePort();
  prometheusUrl = `http://127.0.0.1:${port}`;
  const log = openSync(join(dir, "prometheus.log"), "a");
  prometheus = spawn(
    PROMETHEUS,
    [
      `--config.file=${join(dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--storage.tsdb.retention.time=1h",
    ],
    { stdio: ["ignore", log, log] },
  );
  await eventually(
    async () => (await fetch(`${prometheusUrl}/-/ready`, { signal: AbortSignal.timeout(2000) })).status,
    (status) => status === 200,
    "prometheus ready",
  );
}, 180_000);

afterAll(async () => {
  if (prometheus && prometheus.exitCode === null) {
    const exited = new Promise((resolve) => prometheus?.once("exit", resolve));
    prometheus.kill("SIGTERM");
    const timer = setTimeout(() => prometheus?.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  }
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe("a real Prometheus scraping a running stack", () => {
  it("scrapes every target with its token, then answers a transfer's bytes and a create's duration", async () => {
    const up = await eventually(
      () => query("up"),
      (samples) => samples.length === 3 && samples.every((s) => s.value === 1),
      "every target up",
    );
    expect(up.map((s) => s.metric.job).sort()).toEqual([
      "control-plane",
      "regional-managers",
      "regional-managers",
    ]);

    const call = stack.call;
    const image = await call("POST", "/v1/images", stack.projectToken, {
      name: "guest",
      origin_region: "eu-west",
      format: "qcow2",
    });
    expect(image.status).toBe(201);
    await uploadImage({
      path: ensureGuestImage(),
      managerUrl: image.body.upload.url,
      token: image.body.upload.token,
      imageId: image.body.id,
      version: 1,
      format: "qcow2",
    });
    const created = await call("POST", "/v1/vm-groups", stack.projectToken, {
      name: "scraped",
      image: image.body.id,
      region: "us-east",
      size: 1,
      machine: { vcpus: 1, memory_mb: 192 },
    });
    expect(created.status).toBe(202);
    let operation: any;
    const deadline = Date.now() + 240_000;
    while (Date.now() < deadline) {
      operation = (await call("GET", `/v1/operations/${created.body.id}?wait=10s`, stack.projectToken)).body;
      if (operation.done) break;
    }
    expect(operation, stack.logs()).toMatchObject({
      state: "succeeded",
      result: { datacenter: "us-east-a" },
    });
    // The operation samples the transfer every 250 ms: its bytes_total is the version's size,
    // its bytes_done what the datacenter held at the last sample (all of it, or less when the
    // pull ended between two samples).
    const reported = operation.progress.bytes_total as number;
    expect(reported).toBeGreaterThan(0);

    // What us-east-a received from eu-west-a: chunk data, so at most the version's bytes the
    // operation reports, and most of them (a qcow2 file has few zero runs to skip).
    const pulled = await eventually(
      () =>
        query(
          'sum(globalvm_manager_transfer_bytes_total{datacenter="us-east-a",direction="in",peer="eu-west-a"})',
        ),
      (samples) => (samples[0]?.value ?? 0) > 0,
      "bytes pulled into us-east-a",
    );
    const bytesIn = pulled[0]?.value as number;
    expect(bytesIn).toBeLessThanOrEqual(reported);
    expect(bytesIn).toBeGreaterThan(reported * 0.5);
    expect(bytesIn).toBeGreaterThanOrEqual(Math.min(operation.progress.bytes_done, reported * 0.5));
    // The source counted the same bytes out, naming the puller.
    const sent = await eventually(
      () =>
        query(
          'sum(globalvm_manager_transfer_bytes_total{datacenter="eu-west-a",direction="out",peer="us-east-a"})',
        ),
      (samples) => samples[0]?.value === bytesIn,
      "bytes served by eu-west-a",
    );
    expect(sent[0]?.value).toBe(bytesIn);

    const durations = await eventually(
      () => query('globalvm_operation_duration_seconds_count{kind="create-vm-group"}'),
      (samples) => samples.some((s) => s.value >= 1),
      "create-vm-group duration histogram",
    );
    expect(durations.find((s) => s.value >= 1)?.metric).toMatchObject({
      job: "control-plane",
      kind: "create-vm-group",
      result: "succeeded",
    });
    const boots = await eventually(
      () => query('globalvm_manager_guest_boots_total{datacenter="us-east-a",result="ready"}'),
      (samples) => (samples[0]?.value ?? 0) >= 1,
      "a guest boot counted",
    );
    expect(boots[0]?.value).toBe(1);
  }, 360_000);
});
