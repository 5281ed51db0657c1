// Helpers for the orchestrator's tests: speak to a control plane over HTTP as a client does,
// create operations the probe handler runs, follow them with long-polls, and start the probe
// control plane as a real process.
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { expect } from "vitest";
import { strongSecret } from "../support/secrets.ts";

export const ADMIN_TOKEN = strongSecret("orchestrator-admin-");
const SIGNING_KEY_SECRET = strongSecret();
const PROBE_CONTROL_PLANE = fileURLToPath(new URL("./probe-control-plane.ts", import.meta.url));

export interface Answer {
  status: number;
  body: any;
}

export async function call(url: string, method: string, path: string, token: string, body?: unknown) {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(90_000),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null } as Answer;
}

async function expectStatus(status: number, answer: Promise<Answer>, what: string) {
  const { status: got, body } = await answer;
  if (got !== status) throw new Error(`${what}: expected ${status}, got ${got}: ${JSON.stringify(body)}`);
  return body;
}

export interface Tenant {
  token: string;
  imageId: string;
}

/** A region with a datacenter, a project with a read/write token, and an image to point groups at. */
export async function prepareTenant(url: string): Promise<Tenant> {
  await expectStatus(201, call(url, "POST", "/v1/regions", ADMIN_TOKEN, { name: "eu-west" }), "region");
  await expectStatus(
    201,
    call(url, "POST", "/v1/datacenters", ADMIN_TOKEN, {
      name: "eu-west-a",
      region: "eu-west",
      capacity: { vcpus: 64, memory_mb: 65_536, disk_bytes: 1e11 },
    }),
    "datacenter",
  );
  const project = await expectStatus(
    201,
    call(url, "POST", "/v1/projects", ADMIN_TOKEN, { name: "acme" }),
    "project",
  );
  const { secret: token } = await expectStatus(
    201,
    call(url, "POST", `/v1/projects/${project.id}/tokens`, ADMIN_TOKEN, { name: "writer" }),
    "token",
  );
  const image = await expectStatus(
    201,
    call(url, "POST", "/v1/images", token, { name: "base", origin_region: "eu-west" }),
    "image",
  );
  return { token, imageId: image.id };
}

/** A create-vm-group operation; the probe's behaviour follows the group's name. */
export async function createProbeOperation(url: string, tenant: Tenant, name: string) {
  return expectStatus(
    202,
    call(url, "POST", "/v1/vm-groups", tenant.token, {
      name,
      image: tenant.imageId,
      region: "eu-west",
      size: 1,
      machine: { vcpus: 1, memory_mb: 128 },
    }),
    `create ${name}`,
  );
}

export interface Observation {
  operation: any;
  /** When the long-poll answered, and how long it waited. */
  at: number;
  waitedMs: number;
}

/**
 * Follows an operation with `?wait=` long-polls until it ends, checking on every answer that its
 * bytes never went backwards. `url` may change (a restarted process): pass a function.
 */
export async function followOperation(
  url: string | (() => string),
  token: string,
  id: string,
  timeoutMs: number,
  onAnswer?: (observation: Observation) => void,
): Promise<Observation[]> {
  const seen: Observation[] = [];
  const deadline = Date.now() + timeoutMs;
  let bytes = 0;
  while (Date.now() < deadline) {
    const started = Date.now();
    let answer: Answer;
    try {
      answer = await call(
        typeof url === "string" ? url : url(),
        "GET",
        `/v1/operations/${id}?wait=20s`,
        token,
      );
    } catch {
      // The control plane is down (killed on purpose): ask again once it is back.
      await new Promise((resolve) => setTimeout(resolve, 200));
      continue;
    }
    expect(answer.status).toBe(200);
    const observation = { operation: answer.body, at: Date.now(), waitedMs: Date.now() - started };
    seen.push(observation);
    onAnswer?.(observation);
    expect(answer.body.progress.bytes_done).toBeGreaterThanOrEqual(bytes);
    bytes = answer.body.progress.bytes_done;
    if (answer.body.done) return seen;
  }
  throw new Error(
    `operation ${id} did not end in ${timeoutMs} ms: ${JSON.stringify(seen.at(-1)?.operation)}`,
  );
}

export interface ProbeProcess {
  child: ChildProcess;
  url: string;
  output(): string;
  /** kill -9, and wait until it is gone. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

/** The probe control plane as a real process (env: DATABASE_URL or PROBE_DATA_DIR, PROBE_LOG, …). */
export async function startProbeProcess(env: Record<string, string>): Promise<ProbeProcess> {
  const child = spawn(process.execPath, [PROBE_CONTROL_PLANE], {
    env: {
      ...process.env,
      DATABASE_URL: undefined,
      GLOBALVM_ADMIN_TOKEN: ADMIN_TOKEN,
      GLOBALVM_SIGNING_KEY_SECRET: SIGNING_KEY_SECRET,
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`probe control plane did not start:\n${output}`)),
      90_000,
    );
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /control plane on (http:\/\/\S+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1] as string);
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`probe control plane exited (${code}):\n${output}`));
    });
  });
  return {
    child,
    url,
    output: () => output,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Long-polls an operation until `predicate` holds for it (or it ends); returns it then. */
export async function waitForOperation(
  url: string,
  token: string,
  id: string,
  predicate: (operation: any) => boolean,
  timeoutMs: number,
): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  let last: any;
  while (Date.now() < deadline) {
    last = (await call(url, "GET", `/v1/operations/${id}?wait=5s`, token)).body;
    if (predicate(last) || last.done) return last;
  }
  throw new Error(`operation ${id} never matched in ${timeoutMs} ms: ${JSON.stringify(last)}`);
}
