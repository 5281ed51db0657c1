// globalvm up: the embedded default. One process: the control plane on PGlite and one
// regional manager per region on loopback (in-process, each with its own data dir and
// credential), QEMU guests as their children. As root, each datacenter's guests and their
// networks live in a network namespace of their own (up-hosts.ts). Tokens and credentials are kept in the data
// dir, so running it again resumes the same state; Ctrl-C stops the guests, the managers
// and the catalog, and exits 0.

import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { resolve } from "node:path";
import type { RunningControlPlane } from "../api/server.ts";
import { type ApiClient, createApiClient } from "../client/api.ts";
import { isExecutableOnPath } from "../common/executables.ts";
// Types only: the services are imported when `up` runs, so that --help starts fast.
import type { HttpLimits } from "../common/http-limits.ts";
import { lineLog } from "../common/log.ts";
import { preparePrivateDir } from "../common/private-dir.ts";
import type { RunningHostAgent } from "../regional-manager/host-agent/service.ts";
import type { RegionalManagerLimits, RunningRegionalManager } from "../regional-manager/service.ts";
import {
  type Command,
  CommandFailure,
  closeOnSignal,
  parseCommandLine,
  parsePort,
  UsageError,
} from "./command.ts";
import { callApi, expectAnswer, listAll } from "./connection.ts";
import { ENV_FILE, upDataDir, writeEnvFile } from "./env.ts";
import { LIMIT_ENV_USAGE, managerLimits } from "./manager-limits.ts";
import { GUEST_IMAGE, missingPrerequisites, thisMachine } from "./prerequisites.ts";
import { HTTP_LIMITS_USAGE, httpLimitsFromEnv } from "./serve.ts";
import {
  capEffOfThisProcess,
  createUpHosts,
  guestNetworkBlockers,
  planUpHosts,
  removeUpHosts,
  type UpHost,
  type UpHosts,
} from "./up-hosts.ts";
import { upLogFile, upLoggers } from "./up-logs.ts";
import { readUpSecrets, SECRETS_FILE, type UpSecrets, writeUpSecrets } from "./up-secrets.ts";

export const DEFAULT_REGIONS = ["eu-west", "us-east"];
export const DEFAULT_PROJECT = "default";
const HOST = "127.0.0.1";
/** A region name whose datacenter name (`<region>-a`) is still a valid name (schemas/common.ts). */
const REGION_NAME = /^[a-z](?:[a-z0-9-]{0,59}[a-z0-9])?$/;

const USAGE = `Usage: globalvm up [--regions R1,R2] [--port N] [--data-dir DIR] [--json] [--no-guest-network]

Runs the whole of globalvm on this machine in one process tree: the control plane with an
embedded PGlite catalog and one regional manager per region (datacenter <region>-a) on
loopback, running QEMU guests. Prints the endpoint, the admin token, a project token (project
"${DEFAULT_PROJECT}", created on the first run) and the commands to run next. Running it again on
the same data dir resumes the same state: same tokens, images and VM groups. Ctrl-C (SIGINT or
SIGTERM) stops the guests, the managers and the catalog, then exits 0.

Guest networks: run as root (CAP_NET_ADMIN and CAP_SYS_ADMIN, with ip, nft, nsenter and socat),
each datacenter's host is a network namespace (gvup-<tag>-<n>) joined to the others by a WAN
bridge in one more (gvup-<tag>-wan): guests get their private addresses there and reach each
other across datacenters over VXLAN. The managers' APIs stay on loopback. Ctrl-C deletes the
namespaces. Otherwise up says in one line what is missing and guests run isolated, with no
private address.

Options:
  --regions R1,R2  regions to run, one datacenter each (default ${DEFAULT_REGIONS.join(",")})
  --port N         the control plane's port (default: $PORT, else 8080; 0 picks a free one)
  --data-dir DIR   catalog, image stores, guests and secrets.json: made 0700 with files
                   0600, refused if other users can write to it
                   (default: $GLOBALVM_DATA_DIR, else .globalvm/up in the current directory)
  --json           once every manager is up, print one line of JSON on stdout:
                   {endpoint, token, admin_token, regions, guest_network, ...}; logs go
                   to stderr
  --no-guest-network
                   run guests isolated, without namespaces, even as root
  --hosts-per-datacenter N
                   run N host agents per datacenter (host-1 … host-N, each offering this
                   machine's cores and memory): each manager places guests on its hosts
                   instead of running them itself; each host is a namespace of its own
                   on the guest network, and the manager's namespace is the datacenter's
                   gateway for exposed ports. Default 0: each manager runs its guests itself
  -h, --help       show this help

Environment:
  GLOBALVM_ADMIN_TOKEN  use this admin token (32+ random characters, no patterns: openssl
                        rand -base64 32) instead of the one generated on the first run and
                        kept in the data dir
  GLOBALVM_LOG_LEVEL    fatal, error, warn, info (default), debug, trace or silent: the
                        services' JSON lines go to DIR/logs/<service>.log, short lines here
Each regional manager's limits (see globalvm serve regional-manager --help):
${LIMIT_ENV_USAGE}
Both servers' limits on slow clients:
${HTTP_LIMITS_USAGE}

Needs qemu-system-x86_64 and qemu-img on PATH and the guest image (npm run guest-image).
`;

export interface UpOptions {
  regions: string[];
  port: number;
  dataDir: string;
  json: boolean;
  /** From the environment, for every manager started. */
  managerLimits: Partial<RegionalManagerLimits>;
  /** From the environment, for the control plane's server and every manager's. */
  httpLimits: Partial<HttpLimits>;
  /** Give guests networks (in namespaces) when this machine allows it. */
  guestNetwork: boolean;
  /** Host agents started per datacenter (0: each manager runs its guests itself). */
  hostsPerDatacenter: number;
}

/** The command line of `up`, checked: regions are valid, distinct names. */
export function parseUpArgs(args: string[], env: NodeJS.ProcessEnv): UpOptions {
  const { values } = parseCommandLine(
    args,
    {
      regions: { type: "string" },
      port: { type: "string" },
      "data-dir": { type: "string" },
      json: { type: "boolean", default: false },
      "no-guest-network": { type: "boolean", default: false },
      "hosts-per-datacenter": { type: "string" },
    },
    USAGE,
  );
  const hostsText = values["hosts-per-datacenter"] ?? "0";
  if (!/^\d+$/.test(hostsText) || Number(hostsText) > MAX_HOSTS_PER_DATACENTER)
    throw new UsageError(
      `--hosts-per-datacenter must be a whole number from 0 to ${MAX_HOSTS_PER_DATACENTER}, not '${hostsText}'`,
      USAGE,
    );
  const regions =
    values.regions === undefined ? DEFAULT_REGIONS : values.regions.split(",").map((r) => r.trim());
  if (regions.length === 0 || regions.some((r) => r === ""))
    throw new UsageError("--regions needs region names separated by commas, like eu-west,us-east", USAGE);
  for (const region of regions) {
    if (!REGION_NAME.test(region))
      throw new UsageError(
        `--regions: '${region}' is not a region name (lowercase letters, digits and '-', starting with a letter, at most 61 characters)`,
        USAGE,
      );
  }
  if (new Set(regions).size !== regions.length)
    throw new UsageError("--regions must not repeat a region", USAGE);
  return {
    regions,
    port: parsePort(values.port ?? env.PORT, 8080, USAGE),
    dataDir: upDataDir(values["data-dir"], env),
    json: values.json,
    managerLimits: managerLimits({}, env, USAGE),
    httpLimits: httpLimitsFromEnv(env),
    guestNetwork: !values["no-guest-network"],
    hostsPerDatacenter: Number(hostsText),
  };
}

/** The same shape as the tokens the control plane issues (api/auth.ts newTokenSecret). */
function newAdminToken(): string {
  return `gvm_${randomBytes(32).toString("base64url")}`;
}

export function datacenterOf(region: string): string {
  return `${region}-a`;
}

async function assertPortFree(port: number): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((resolvePromise, reject) => {
    const probe = createServer();
    probe.once("error", (error: NodeJS.ErrnoException) =>
      reject(
        error.code === "EADDRINUSE"
          ? new CommandFailure(
              `port ${port} on ${HOST} is already in use`,
              "give another with --port N (0 picks a free one), or stop what is using it",
            )
          : error,
      ),
    );
    probe.listen(port, HOST, () => probe.close(() => resolvePromise()));
  });
}

/** Answers whether `token` is a token the control plane knows (401 means it does not). */
async function tokenIsKnown(endpoint: string, token: string): Promise<boolean> {
  const response = await fetch(`${endpoint}/v1/regions?page_size=1`, {
    headers: { authorization: `Bearer ${token}` },
  });
  await response.body?.cancel();
  return response.status !== 401;
}

async function ensureRegion(admin: ApiClient, name: string): Promise<void> {
  const answer = await callApi(() => admin.POST("/v1/regions", { body: { name } }));
  if (answer.response.status === 409) return;
  expectAnswer(`create region ${name}`, answer);
}

async function ensureProject(admin: ApiClient, secrets: UpSecrets): Promise<{ id: string; name: string }> {
  const projects = await listAll("list projects", (page_token) =>
    admin.GET("/v1/projects", {
      params: { query: { page_size: 200, ...(page_token ? { page_token } : {}) } },
    }),
  );
  const known =
    projects.find((p) => p.id === secrets.project?.id) ?? projects.find((p) => p.name === DEFAULT_PROJECT);
  if (known) return known;
  return expectAnswer(
    `create project ${DEFAULT_PROJECT}`,
    await callApi(() => admin.POST("/v1/projects", { body: { name: DEFAULT_PROJECT } })),
  );
}

/** More would only be QEMU processes competing for one machine's cores. */
const MAX_HOSTS_PER_DATACENTER = 16;

interface StartedStack {
  controlPlane?: RunningControlPlane;
  managers: RunningRegionalManager[];
  /** Host agents, closed after the managers (which stop their guests through them). */
  agents: RunningHostAgent[];
  /** The datacenters' hosts, when guests have networks. */
  hosts?: UpHosts;
  /** The managers' and agents' data dirs: their metadata socket dirs go with the hosts. */
  guestDataDirs: string[];
}

async function stopStack(stack: StartedStack): Promise<void> {
  // Managers first: each stops its guests and reports it while the control plane still listens.
  await Promise.allSettled(stack.managers.map((manager) => manager.close()));
  await Promise.allSettled(stack.agents.map((agent) => agent.close({ stopGuests: true })));
  await stack.controlPlane?.close();
  // The guests are gone: their hosts go, with every device and rule in them.
  if (stack.hosts) removeUpHosts(stack.hosts, stack.guestDataDirs);
}

type GuestNetworkState = { enabled: true; wan: string; hosts: UpHost[] } | { enabled: false; reason: string };

/** The datacenters' hosts, made; or why guests run isolated (said in one line). */
function setUpGuestNetworks(
  options: UpOptions,
  info: (line: string) => void,
): { hosts?: UpHosts; state: GuestNetworkState } {
  if (!options.guestNetwork) return { state: { enabled: false, reason: "--no-guest-network" } };
  const blockers = guestNetworkBlockers({
    capEff: capEffOfThisProcess(),
    onPath: (p) => isExecutableOnPath(p),
  });
  const off = (reason: string) => {
    info(`globalvm: guest networking is off: ${reason}; guests run isolated, with no private address`);
    return { state: { enabled: false as const, reason } };
  };
  if (blockers.length > 0) return off(`it needs ${blockers.join("; ")}`);
  const hosts = planUpHosts(options.dataDir, options.regions.map(datacenterOf), options.hostsPerDatacenter);
  try {
    createUpHosts(hosts);
  } catch (error) {
    // Never a half-made host: what was made goes, and guests run as they would without root.
    removeUpHosts(hosts, []);
    return off(
      `making its namespaces failed: ${error instanceof Error ? error.message.trim() : String(error)}`,
    );
  }
  return { hosts, state: { enabled: true, wan: hosts.wan, hosts: hosts.hosts } };
}

export const upCommand: Command = {
  summary: "run control plane, one regional manager per region and QEMU guests, here",
  usage: USAGE,
  async run(args) {
    const options = parseUpArgs(args, process.env);
    const missing = missingPrerequisites(thisMachine);
    if (missing.length > 0) {
      throw new CommandFailure(
        "globalvm up cannot start: prerequisites are missing",
        missing.map((m) => `  - ${m}`).join("\n"),
      );
    }
    await assertPortFree(options.port);
    // Before anything is written to it: 0700, refused if other users can write to it.
    preparePrivateDir(options.dataDir);
    const info = (line: string) => process.stderr.write(`${line}\n`);
    // JSON lines in <data-dir>/logs/, one file per service; short human lines on the terminal.
    const loggers = upLoggers(options.dataDir, info);

    const stack: StartedStack = {
      managers: [],
      agents: [],
      guestDataDirs: options.regions.flatMap((region) => [
        resolve(options.dataDir, datacenterOf(region)),
        ...Array.from({ length: options.hostsPerDatacenter }, (_, i) =>
          resolve(options.dataDir, `${datacenterOf(region)}-h${i + 1}`),
        ),
      ]),
    };
    let stopping = false;
    let startup: Promise<unknown> = Promise.resolve();
    closeOnSignal(async () => {
      stopping = true;
      await startup.catch(() => undefined);
      await stopStack(stack);
    });

    const { startControlPlane } = await import("../api/server.ts");
    const { startRegionalManager } = await import("../regional-manager/service.ts");
    const { startHostAgent } = await import("../regional-manager/host-agent/service.ts");
    const start = async () => {
      const secrets = readUpSecrets(options.dataDir);
      const adminToken = process.env.GLOBALVM_ADMIN_TOKEN ?? secrets.admin_token ?? newAdminToken();
      if (!process.env.GLOBALVM_ADMIN_TOKEN && secrets.admin_token !== adminToken) {
        secrets.admin_token = adminToken;
        writeUpSecrets(options.dataDir, secrets);
      }
      const controlPlane = await startControlPlane({
        catalog: { dataDir: options.dataDir },
        ...(process.env.GLOBALVM_SIGNING_KEY_SECRET !== undefined
          ? { signingKeySecret: process.env.GLOBALVM_SIGNING_KEY_SECRET }
          : {}),
        port: options.port,
        host: HOST,
        adminToken,
        http: options.httpLimits,
        logger: loggers.controlPlane(),
      }).catch((error: unknown) => {
        // Environment problems (the catalog locked by another process, a port taken): no stack.
        throw new CommandFailure(
          `the control plane did not start: ${error instanceof Error ? error.message : String(error)}`,
        );
      });
      stack.controlPlane = controlPlane;
      // Only now: the catalog's lock says no other up runs on this data dir, whose hosts these
      // would be (an up that is refused must leave them alone).
      const network = setUpGuestNetworks(options, info);
      if (network.hosts) stack.hosts = network.hosts;
      const endpoint = controlPlane.url;
      const admin = createApiClient({ endpoint, token: adminToken });

      for (const region of options.regions) await ensureRegion(admin, region);
      const project = await ensureProject(admin, secrets);
      if (secrets.project?.id !== project.id || !(await tokenIsKnown(endpoint, secrets.project.token))) {
        const created = expectAnswer(
          "create a project token",
          await callApi(() =>
            admin.POST("/v1/projects/{id}/tokens", {
              params: { path: { id: project.id } },
              body: { name: "globalvm up", scopes: ["read", "write"] },
            }),
          ),
        );
        secrets.project = { id: project.id, token: created.secret };
      }
      for (const region of options.regions) {
        const datacenter = datacenterOf(region);
        const kept = secrets.managers[datacenter];
        if (kept && (await tokenIsKnown(endpoint, kept))) continue;
        const credential = expectAnswer(
          `issue the credential of ${datacenter}`,
          await callApi(() => admin.POST("/v1/manager-credentials", { body: { region, datacenter } })),
        );
        secrets.managers[datacenter] = credential.secret;
      }
      writeUpSecrets(options.dataDir, secrets);

      const guestKernel = GUEST_IMAGE.replace(/\.qcow2$/, "-vmlinuz");
      const guestInitrd = GUEST_IMAGE.replace(/\.qcow2$/, "-initrd.gz");
      const probeGuest = existsSync(guestKernel)
        ? {
            probeGuest: {
              kernel: guestKernel,
              ...(existsSync(guestInitrd) ? { initrd: guestInitrd } : {}),
            },
          }
        : {};
      await Promise.all(
        options.regions.map(async (region) => {
          if (stopping) return;
          const datacenter = datacenterOf(region);
          // The manager's own host: its guests', or with host agents the datacenter's gateway.
          const host = network.hosts?.hosts.find((h) => h.datacenter === datacenter && !h.host);
          const manager = await startRegionalManager({
            region,
            datacenter,
            controlPlaneUrl: endpoint,
            credential: secrets.managers[datacenter] as string,
            dataDir: resolve(options.dataDir, datacenter),
            port: 0,
            host: HOST,
            stopGuestsOnClose: true,
            limits: options.managerLimits,
            http: options.httpLimits,
            logger: loggers.manager(datacenter),
            ...(host ? { guestNetwork: { underlayAddress: host.underlay, netns: host.netns } } : {}),
            ...(options.hostsPerDatacenter > 0 ? { hostAgents: {} } : {}),
            ...probeGuest,
          });
          stack.managers.push(manager);
          for (let index = 1; index <= options.hostsPerDatacenter && !stopping; index++) {
            const place = network.hosts?.hosts.find(
              (h) => h.datacenter === datacenter && h.host === `host-${index}`,
            );
            const agent = await startHostAgent({
              name: `host-${index}`,
              datacenter,
              managerUrl: manager.url,
              credential: secrets.managers[datacenter] as string,
              // Short: a guest's sockets live under it, and unix socket paths end at 107 bytes.
              dataDir: resolve(options.dataDir, `${datacenter}-h${index}`),
              log: lineLog(loggers.hostAgent(datacenter, `host-${index}`)),
              ...(place ? { guestNetwork: { underlayAddress: place.underlay, netns: place.netns } } : {}),
              ...probeGuest,
            });
            stack.agents.push(agent);
          }
        }),
      );
      if (stopping) return undefined;

      const datacenters = await listAll("list datacenters", (page_token) =>
        admin.GET("/v1/datacenters", {
          params: { query: { page_size: 200, ...(page_token ? { page_token } : {}) } },
        }),
      );
      const ours = options.regions.map((region) => {
        const dc = datacenters.find((d) => d.name === datacenterOf(region));
        if (dc?.status !== "up")
          throw new CommandFailure(
            `the manager of ${datacenterOf(region)} registered but is ${dc?.status ?? "missing"}`,
          );
        return { region, datacenter: dc.name, manager_url: dc.manager_url, status: dc.status };
      });
      return {
        endpoint,
        token: secrets.project?.token as string,
        admin_token: adminToken,
        admin_token_from: process.env.GLOBALVM_ADMIN_TOKEN ? "GLOBALVM_ADMIN_TOKEN" : "data-dir",
        project: { id: project.id, name: project.name },
        regions: options.regions,
        datacenters: ours,
        data_dir: options.dataDir,
        guest_image: GUEST_IMAGE,
        guest_network: network.state,
        hosts_per_datacenter: options.hostsPerDatacenter,
      };
    };
    startup = start();
    let ready: Awaited<ReturnType<typeof start>>;
    try {
      ready = (await startup) as Awaited<ReturnType<typeof start>>;
    } catch (error) {
      await stopStack(stack).catch(() => undefined);
      throw error;
    }
    if (!ready) return new Promise<number>(() => {});

    writeEnvFile(options.dataDir, ready);
    if (options.json) {
      process.stdout.write(`${JSON.stringify(ready)}\n`);
    } else {
      process.stdout.write(upBanner(ready));
    }
    // Runs until SIGINT/SIGTERM; closeOnSignal exits.
    return new Promise<number>(() => {});
  },
};

export function upBanner(ready: {
  endpoint: string;
  token: string;
  admin_token: string;
  project: { id: string; name: string };
  datacenters: { region: string; datacenter: string; manager_url: string | null }[];
  data_dir: string;
  guest_network: GuestNetworkState;
}): string {
  return `globalvm is up: control plane on ${ready.endpoint}
  API reference  ${ready.endpoint}/docs   (OpenAPI: ${ready.endpoint}/openapi.json)
${ready.datacenters.map((dc) => `  region ${dc.region.padEnd(10)} datacenter ${dc.datacenter} manager ${dc.manager_url}`).join("\n")}
  guest network  ${
    ready.guest_network.enabled
      ? `on: datacenter hosts ${ready.guest_network.hosts.map((h) => h.netns).join(", ")} (network namespaces)`
      : `off (${ready.guest_network.reason})`
  }
  data dir       ${ready.data_dir} (tokens in ${SECRETS_FILE}, mode 0600)
  logs           ${upLogFile(ready.data_dir, "*")} (JSON lines: grep an operation's trace_id)
  admin token    ${ready.admin_token}
  project        ${ready.project.name} (${ready.project.id})
  project token  ${ready.token}

Next, in another terminal (${ENV_FILE} in the data dir holds these lines):
  eval "$(npx globalvm env${ready.data_dir === upDataDir(undefined, process.env) ? "" : ` --data-dir ${ready.data_dir}`})"   # GLOBALVM_ENDPOINT, GLOBALVM_TOKEN, TF_CLI_CONFIG_FILE
  cd examples/terraform/quickstart
  terraform init && terraform apply

Or with the CLI: globalvm regions | globalvm image push FILE --name N --region R | globalvm image ls
Ctrl-C stops everything (guests included); 'globalvm up' again resumes this state.
`;
}
