// A globalvm stack as users run it, for end-to-end tests: a control plane on an embedded
// catalog and one regional manager per region, each its own process, a project and its token.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killRecordedVms } from "./compute.ts";
import { type RunningProcess, startCli } from "./processes.ts";
import { strongSecret } from "./secrets.ts";

export interface ApiAnswer {
  status: number;
  body: any;
}

export interface Stack {
  dir: string;
  controlPlane: string;
  adminToken: string;
  projectToken: string;
  processes: RunningProcess[];
  /** The datacenter's manager URL as it last announced it (it changes when the manager restarts). */
  managerUrls: Record<string, string>;
  /** The running process of "control-plane" or of a region's manager (to send it SIGSTOP, say). */
  processOf(which: string): RunningProcess;
  /** Kills one process with SIGKILL ("control-plane" or a region's manager) and waits until it is gone. */
  kill(which: string): Promise<void>;
  /** Starts a killed process again on the same data dir (the control plane on the same port). */
  restart(which: string): Promise<void>;
  call(
    method: string,
    path: string,
    token: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<ApiAnswer>;
  /** Every process's last output, for failure messages. */
  logs(): string;
  stop(): Promise<void>;
}

export interface StackOptions {
  name: string;
  regions: string[];
  /** Extra environment for every process (timeouts shortened for a test, say). */
  env?: Record<string, string | undefined>;
  /** The control-plane URL a region's manager is given (a test may put a proxy in between). */
  controlPlaneFor?: (region: string, controlPlane: string) => string;
  /** The control plane's GLOBALVM_REPLICA_IDLE_SECONDS: replicas nobody asked for, unused this long, are collected. */
  replicaIdleSeconds?: number;
  /** More flags for a region's `serve regional-manager`. */
  managerArgs?: (region: string) => string[];
  /** A command a region's manager runs under, e.g. `ip netns exec NAME` to put it on its own host. */
  managerPrefix?: (region: string) => string[];
  /** The control plane's listen address (default 127.0.0.1). */
  controlPlaneHost?: string;
}

export async function startStack(options: StackOptions): Promise<Stack> {
  const dir = mkdtempSync(join(tmpdir(), `globalvm-${options.name}-`));
  const adminToken = strongSecret(`${options.name}-admin-`);
  const processes: RunningProcess[] = [];
  let controlPlane = "";

  const call: Stack["call"] = async (method, path, token, body, headers = {}) => {
    const response = await fetch(`${controlPlane}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body ? { "content-type": "application/json" } : {}),
        ...headers,
      },
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(60_000),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : null };
  };

  const expectCreated = (answer: ApiAnswer, what: string) => {
    if (answer.status !== 201) throw new Error(`${what}: ${answer.status} ${JSON.stringify(answer.body)}`);
    return answer.body;
  };

  const named = new Map<string, RunningProcess>();
  const credentials = new Map<string, string>();
  const managerUrls: Record<string, string> = {};
  const track = (which: string, started: RunningProcess) => {
    const previous = named.get(which);
    if (previous) processes.splice(processes.indexOf(previous), 1, started);
    else processes.push(started);
    named.set(which, started);
  };

  const startManager = async (region: string) => {
    const datacenter = `${region}-a`;
    if (!credentials.has(region)) {
      const credential = expectCreated(
        await call("POST", "/v1/manager-credentials", adminToken, { region, datacenter }),
        `credential for ${datacenter}`,
      );
      credentials.set(region, credential.secret);
    }
    const manager = startCli(
      [
        "serve",
        "regional-manager",
        "--region",
        region,
        "--datacenter",
        datacenter,
        "--control-plane",
        options.controlPlaneFor?.(region, controlPlane) ?? controlPlane,
        "--data-dir",
        join(dir, datacenter),
        ...(options.managerArgs?.(region) ?? []),
      ],
      { ...options.env, GLOBALVM_MANAGER_CREDENTIAL: credentials.get(region) },
      options.managerPrefix?.(region) ?? [],
    );
    track(region, manager);
    const announced = await manager.waitFor(/regional manager of \S+ \(\S+\) on (http:\/\/\S+)/, 60_000);
    managerUrls[region] = announced[1] as string;
  };

  const startControlPlane = async (port: string) => {
    const host = options.controlPlaneHost ?? "127.0.0.1";
    const cp = startCli(
      ["serve", "control-plane", "--port", port, "--host", host, "--data-dir", join(dir, "cp")],
      {
        ...options.env,
        GLOBALVM_ADMIN_TOKEN: adminToken,
        DATABASE_URL: undefined,
        ...(options.replicaIdleSeconds !== undefined
          ? { GLOBALVM_REPLICA_IDLE_SECONDS: String(options.replicaIdleSeconds) }
          : {}),
      },
    );
    track("control-plane", cp);
    controlPlane = (await cp.waitFor(/control plane on (http:\/\/\S+)/, 60_000))[1] as string;
  };
  await startControlPlane("0");
  for (const region of options.regions) {
    expectCreated(await call("POST", "/v1/regions", adminToken, { name: region }), `region ${region}`);
  }
  const project = expectCreated(await call("POST", "/v1/projects", adminToken, { name: "acme" }), "project");
  const projectToken = expectCreated(
    await call("POST", `/v1/projects/${project.id}/tokens`, adminToken, { name: options.name }),
    "project token",
  ).secret as string;
  await Promise.all(options.regions.map(startManager));

  return {
    dir,
    controlPlane,
    adminToken,
    projectToken,
    processes,
    managerUrls,
    processOf(which) {
      const running = named.get(which);
      if (!running) throw new Error(`no process named ${which} in this stack`);
      return running;
    },
    async kill(which) {
      const running = named.get(which);
      if (!running) throw new Error(`no process named ${which} in this stack`);
      await running.stop("SIGKILL");
    },
    async restart(which) {
      if (which === "control-plane") await startControlPlane(new URL(controlPlane).port);
      else if (credentials.has(which)) await startManager(which);
      else throw new Error(`no process named ${which} in this stack`);
    },
    call,
    logs: () => processes.map((p) => p.output().slice(-3000)).join("\n---\n"),
    async stop() {
      await Promise.all(processes.map((p) => p.stop("SIGTERM")));
      await Promise.all(processes.map((p) => p.stop("SIGKILL")));
      // Managers leave their guests running when they stop (they reattach on restart).
      killRecordedVms(dir);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
