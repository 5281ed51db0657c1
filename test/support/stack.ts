// A globalvm stack as users run it, for end-to-end tests: a control plane on an embedded
// catalog and one regional manager per region, each its own process, a project and its token.
// Each process's JSON log lines (its stderr) are kept in <dir>/logs/<name>.log; the stack
// records every token and credential it issued, sent or was given, and stop() fails if any of
// them — or anything shaped like a token — is in a log, so every test on a stack checks it.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killRecordedVms } from "./compute.ts";
import { assertNoSecretsInLogs, SecretRecord } from "./log-secrets.ts";
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
  /** Kills one process with SIGKILL ("control-plane", a region's manager, "<region>/host-<n>") and waits until it is gone. */
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
  /** Where each process's JSON log lines are: `<logsDir>/control-plane.log`, `<logsDir>/<region>.log`. */
  logsDir: string;
  /** The secrets this stack issued, sent or was given: no log line may hold one (checked by stop). */
  secrets: SecretRecord;
  /** Fails if a log holds a secret, or the control plane logged no request (the check would prove nothing). */
  checkLogs(): void;
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
  /** More flags for a datacenter's `serve regional-manager`. */
  managerArgs?: (region: string, datacenter: string) => string[];
  /** A command a datacenter's manager runs under, e.g. `ip netns exec NAME` to put it on its own host. */
  managerPrefix?: (region: string, datacenter: string) => string[];
  /** The control plane's listen address (default 127.0.0.1). */
  controlPlaneHost?: string;
  /**
   * Host agents of each region's first datacenter: its manager runs with --host-agents and `host-1` … `host-N` run as
   * processes named `<region>/host-<n>` (data dirs `<dir>/<datacenter>-host-<n>`).
   */
  hostsPerRegion?: number;
  /** More flags for a host agent's `serve host-agent` (e.g. --vcpus 2). */
  hostArgs?: (region: string, host: string) => string[];
  /**
   * Datacenters per region (default 1): `<region>-a`, `<region>-b`, … each with its manager.
   * The first one's manager is the process named `<region>`, the others' are named after their
   * datacenter (`eu-west-b`).
   */
  datacentersPerRegion?: number;
}

/**
 * The last lines of each process's log, every incarnation of it (a restarted manager appends
 * to the same file), without the polls of operations that would crowd out what happened.
 */
function logTails(logsDir: string, lines = 60): string {
  return readdirSync(logsDir)
    .sort()
    .map((file) => {
      const kept = readFileSync(join(logsDir, file), "utf8")
        .split("\n")
        .filter((line) => line && !line.includes('"route":"/v1/operations/:id"'));
      return `${file}:\n${kept.slice(-lines).join("\n")}`;
    })
    .join("\n---\n");
}

/** A manager process of the stack: its name (see StackOptions.datacentersPerRegion) and where it runs. */
interface ManagerSlot {
  region: string;
  datacenter: string;
}

export async function startStack(options: StackOptions): Promise<Stack> {
  const dir = mkdtempSync(join(tmpdir(), `globalvm-${options.name}-`));
  const logsDir = join(dir, "logs");
  mkdirSync(logsDir, { mode: 0o700 });
  const logFileOf = (which: string) => join(logsDir, `${which}.log`);
  const adminToken = strongSecret(`${options.name}-admin-`);
  const secrets = new SecretRecord();
  secrets.add("admin token", adminToken);
  secrets.addFromEnv(options.env ?? {});
  const processes: RunningProcess[] = [];
  let controlPlane = "";

  const call: Stack["call"] = async (method, path, token, body, headers = {}) => {
    secrets.add("a bearer token a test sent", token);
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
    const answer = text ? JSON.parse(text) : null;
    secrets.addFromAnswer(`${method} ${path.split("?")[0]}`, answer);
    return { status: response.status, body: answer };
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

  const slots = new Map<string, ManagerSlot>();
  for (const region of options.regions) {
    for (let i = 0; i < (options.datacentersPerRegion ?? 1); i++) {
      const datacenter = `${region}-${String.fromCharCode(97 + i)}`;
      slots.set(i === 0 ? region : datacenter, { region, datacenter });
    }
  }

  /** Starts the manager named `which`: a region (its first datacenter's) or a further datacenter. */
  const startManager = async (which: string) => {
    const slot = slots.get(which);
    if (!slot) throw new Error(`no manager named ${which} in this stack`);
    const { region, datacenter } = slot;
    if (!credentials.has(which)) {
      const credential = expectCreated(
        await call("POST", "/v1/manager-credentials", adminToken, { region, datacenter }),
        `credential for ${datacenter}`,
      );
      credentials.set(which, credential.secret);
      secrets.add(`credential of ${datacenter}`, credential.secret);
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
        ...(options.hostsPerRegion ? ["--host-agents"] : []),
        ...(options.managerArgs?.(region, datacenter) ?? []),
      ],
      { ...options.env, GLOBALVM_MANAGER_CREDENTIAL: credentials.get(which) },
      options.managerPrefix?.(region, datacenter) ?? [],
      logFileOf(which),
    );
    track(which, manager);
    const announced = await manager.waitFor(/regional manager of \S+ \(\S+\) on (http:\/\/\S+)/, 60_000);
    managerUrls[which] = announced[1] as string;
  };

  const startHost = async (region: string, host: string) => {
    const datacenter = `${region}-a`;
    const agent = startCli(
      [
        "serve",
        "host-agent",
        "--datacenter",
        datacenter,
        "--manager",
        managerUrls[region] as string,
        "--data-dir",
        join(dir, `${datacenter}-${host}`),
        "--name",
        host,
        ...(options.hostArgs?.(region, host) ?? []),
      ],
      { ...options.env, GLOBALVM_MANAGER_CREDENTIAL: credentials.get(region) },
      [],
      logFileOf(`${region}-${host}`),
    );
    track(`${region}/${host}`, agent);
    await agent.waitFor(/globalvm host agent \S+ of/, 60_000);
  };
  const hostNames = Array.from({ length: options.hostsPerRegion ?? 0 }, (_, i) => `host-${i + 1}`);

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
      [],
      logFileOf("control-plane"),
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
  await Promise.all([...slots.keys()].map(startManager));
  for (const region of options.regions) await Promise.all(hostNames.map((host) => startHost(region, host)));

  function checkLogs() {
    const requests = readFileSync(logFileOf("control-plane"), "utf8")
      .split("\n")
      .filter((line) => line.includes('"route":'));
    if (requests.length === 0) throw new Error(`the control plane logged no request in ${logsDir}`);
    for (const region of credentials.keys()) {
      if (readFileSync(logFileOf(region), "utf8").trim() === "")
        throw new Error(`the manager of ${region} logged nothing in ${logsDir}`);
    }
    assertNoSecretsInLogs(logsDir, secrets);
  }

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
      else if (named.has(which) && which.includes("/")) {
        const [region, host] = which.split("/") as [string, string];
        await startHost(region, host);
      } else throw new Error(`no process named ${which} in this stack`);
    },
    call,
    logs: () => logTails(logsDir),
    logsDir,
    secrets,
    checkLogs,
    async stop() {
      await Promise.all(processes.map((p) => p.stop("SIGTERM")));
      await Promise.all(processes.map((p) => p.stop("SIGKILL")));
      // Managers leave their guests running when they stop (they reattach on restart).
      killRecordedVms(dir);
      // Kept for a look when the check fails (its message names the directory).
      checkLogs();
      // GLOBALVM_KEEP_STACK_DIR=1 keeps every log and data dir, to look at a failure afterwards.
      if (!process.env.GLOBALVM_KEEP_STACK_DIR) rmSync(dir, { recursive: true, force: true });
    },
  };
}
