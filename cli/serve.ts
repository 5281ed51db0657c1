// The production shape, one service per process: globalvm serve control-plane |
// regional-manager, and globalvm migrate. Postgres via DATABASE_URL, else PGlite.
// The services are imported when a command runs, so that --help and the client commands
// start without loading the control plane.
import type { CatalogLocation } from "../api/catalog/db.ts";
import type { HttpLimits } from "../common/http-limits.ts";
import {
  type Command,
  CommandFailure,
  closeOnSignal,
  commandGroup,
  EXIT_OK,
  parseCommandLine,
  parsePort,
  UsageError,
} from "./command.ts";
import { guestNetworkOptions } from "./guest-network-flags.ts";
import { LIMIT_ENV_USAGE, LIMIT_FLAGS, LIMIT_FLAGS_USAGE, managerLimits } from "./manager-limits.ts";
import { hostAgentCommand } from "./serve-host-agent.ts";

export function catalogLocation(dataDir: string, env: NodeJS.ProcessEnv = process.env): CatalogLocation {
  const databaseUrl = env.DATABASE_URL;
  return databaseUrl ? { databaseUrl } : { dataDir };
}

/** The HTTP server's limits set in the environment (DEFAULT_HTTP_LIMITS for the others). */
export function httpLimitsFromEnv(env: NodeJS.ProcessEnv = process.env): Partial<HttpLimits> {
  const limits: Partial<HttpLimits> = {};
  for (const [name, key] of HTTP_LIMIT_ENV) {
    if (env[name] !== undefined) limits[key] = positiveIntegerFromEnv(name, env);
  }
  return limits;
}

const HTTP_LIMIT_ENV = [
  ["GLOBALVM_HTTP_HEADERS_TIMEOUT_MS", "headersTimeoutMs"],
  ["GLOBALVM_HTTP_BODY_IDLE_TIMEOUT_MS", "bodyIdleTimeoutMs"],
  ["GLOBALVM_HTTP_MAX_CONNECTIONS", "maxConnections"],
] as const;

export const HTTP_LIMITS_USAGE = `  GLOBALVM_HTTP_HEADERS_TIMEOUT_MS    a client's request head must arrive within this (default 15000)
  GLOBALVM_HTTP_BODY_IDLE_TIMEOUT_MS  a request body that brings no byte this long is cut (default
                                      60000; a slow but steady upload runs as long as it needs)
  GLOBALVM_HTTP_MAX_CONNECTIONS       connections open at once (default 1024)`;

export const LOG_LEVEL_USAGE = `  GLOBALVM_LOG_LEVEL    fatal, error, warn, info (default), debug, trace or silent. Logs are
                        JSON lines on stderr: level, time, service, datacenter, msg, and the
                        trace_id (W3C traceparent) of the request or operation they are about`;

const CONTROL_PLANE_USAGE = `Usage: globalvm serve control-plane [--port N] [--host H] [--data-dir DIR]

The control plane alone: the HTTP API, the orchestrator, the catalog.

Options:
  --port N        listen port (default: $PORT, else 8080; 0 picks a free one)
  --host H        listen address (default 127.0.0.1)
  --data-dir DIR  the control plane's private dir (made 0700, refused if other users can
                  write to it): the embedded PGlite catalog when DATABASE_URL is not set,
                  and the signing-key secret file (default .globalvm)
  --metrics-public
                  serve /metrics to anyone, without a token (for a network only
                  Prometheus reaches; the same as GLOBALVM_METRICS_PUBLIC=1)
  -h, --help      show this help

Environment:
  DATABASE_URL          a Postgres URL for the catalog (several control planes may share it)
  GLOBALVM_ADMIN_TOKEN  the bootstrap admin token (32+ random characters, no patterns:
                        openssl rand -base64 32); without it one is generated on the first
                        start and printed once
  GLOBALVM_SIGNING_KEY_SECRET
                        wraps the token-signing keys stored in the catalog (32+ random
                        characters); all control planes on one DATABASE_URL need the same.
                        Without it a secret is generated in DIR/signing-key-secret (0600)
${LOG_LEVEL_USAGE}
${HTTP_LIMITS_USAGE}
`;

const controlPlane: Command = {
  summary: "run the control plane (API, orchestrator, catalog)",
  usage: CONTROL_PLANE_USAGE,
  async run(args) {
    const { values } = parseCommandLine(
      args,
      {
        port: { type: "string" },
        host: { type: "string", default: "127.0.0.1" },
        "data-dir": { type: "string", default: ".globalvm" },
        "metrics-public": { type: "boolean" },
      },
      CONTROL_PLANE_USAGE,
    );
    const port = parsePort(values.port ?? process.env.PORT, 8080, CONTROL_PLANE_USAGE);
    const { startControlPlane } = await import("../api/server.ts");
    const running = await startControlPlane({
      catalog: catalogLocation(values["data-dir"]),
      dataDir: values["data-dir"],
      ...(process.env.GLOBALVM_SIGNING_KEY_SECRET !== undefined
        ? { signingKeySecret: process.env.GLOBALVM_SIGNING_KEY_SECRET }
        : {}),
      port,
      host: values.host,
      adminToken: process.env.GLOBALVM_ADMIN_TOKEN,
      http: httpLimitsFromEnv(),
      ...(values["metrics-public"] ? { metricsPublic: true } : {}),
    });
    const db =
      running.services.catalog.kind === "postgres"
        ? "Postgres (DATABASE_URL)"
        : `PGlite in ${values["data-dir"]}`;
    console.log(`globalvm control plane on ${running.url} — catalog: ${db}`);
    console.log(`  API reference: ${running.url}/docs   OpenAPI: ${running.url}/openapi.json`);
    console.log(`  console: ${running.url}/console (sign in with a project token)`);
    if (running.adminToken.kind === "generated") {
      console.log(`  admin token (shown once, keep it): ${running.adminToken.secret}`);
    } else if (running.adminToken.kind === "kept") {
      console.log("  admin token: the one generated on first start (set GLOBALVM_ADMIN_TOKEN to replace it)");
    }
    closeOnSignal(() => running.close());
    return new Promise<number>(() => {});
  },
};

const MANAGER_USAGE = `Usage: globalvm serve regional-manager --region R --datacenter D --control-plane URL
                                       --data-dir DIR [--control-plane-keys FILE]
                                       [--port N] [--host H]

One datacenter's regional manager: chunk store, uploads, peer transfer, QEMU guests. Guests
keep running when it stops and are taken over by the next start.

Options:
  --region R            the region of the datacenter
  --datacenter D        the datacenter this manager serves
  --control-plane URL   the control plane's URL
  --data-dir DIR        the chunk store, images and guests (made 0700, files 0600; refused
                        if other users can write to it)
  --control-plane-keys FILE
                        trust the control plane's public keys in this JWKS file instead of
                        the ones it serves at /.well-known/jwks.json; re-read when a token
                        names a key it lacks (rotate with signs_after_seconds, update FILE)
  --port N              listen port (default 0: a free one)
  --host H              listen address (default 127.0.0.1)
  --metrics-public      serve /metrics to anyone, without a token (the same as
                        GLOBALVM_METRICS_PUBLIC=1); otherwise GLOBALVM_MANAGER_METRICS_TOKEN
                        is asked for, and without one only the loopback is answered
  --qemu-user U         when run as root, the user QEMU runs as (default nobody; "root" keeps
                        root). It needs no access to --data-dir: QEMU is handed its disks and
                        sockets as open descriptors.
  --guest-network-underlay ADDRESS
                        attach guests to their networks on this host: a bridge per network,
                        a tap per guest, a VXLAN tunnel from ADDRESS (this host's address
                        toward other datacenters) and nftables rules, in the manager's network
                        namespace (needs root or CAP_NET_ADMIN). Without it guests get their
                        metadata link only and report no address.
  --guest-network-netns NAME
                        with --guest-network-underlay: this datacenter's host is the network
                        namespace NAME (ip netns add NAME): bridges, tunnels, taps, rules and
                        QEMU live there, the HTTP API stays on --host. Needs nsenter and socat.
  --host-agents         the datacenter's guests run on host agents (globalvm serve host-agent)
                        that register here; this manager places each instance on a host and
                        runs none itself. Each agent attaches its own guests to their
                        networks (serve host-agent --guest-network-underlay). With
                        --guest-network-underlay too, this manager is the datacenter's
                        gateway: it offers the exposed ports (expose) of groups whose guests
                        run on the agents, at ADDRESS, through tunnels to the agents' hosts.
  -h, --help            show this help

Limits (whole numbers of bytes or items; what is over one is refused with 413 naming it):
${LIMIT_FLAGS_USAGE}

Environment:
  GLOBALVM_MANAGER_CREDENTIAL  the credential an admin issued with POST /v1/manager-credentials
  GLOBALVM_HOST_DOWN_AFTER_MS  with --host-agents: milliseconds without a sync after which a
                               host is down (default 30000)
${LOG_LEVEL_USAGE}
${LIMIT_ENV_USAGE}
${HTTP_LIMITS_USAGE}
`;

const regionalManager: Command = {
  summary: "run one datacenter's regional manager",
  usage: MANAGER_USAGE,
  async run(args) {
    const { values } = parseCommandLine(
      args,
      {
        region: { type: "string" },
        datacenter: { type: "string" },
        "control-plane": { type: "string" },
        "data-dir": { type: "string" },
        "control-plane-keys": { type: "string" },
        port: { type: "string" },
        host: { type: "string", default: "127.0.0.1" },
        "qemu-user": { type: "string" },
        "guest-network-underlay": { type: "string" },
        "guest-network-netns": { type: "string" },
        "metrics-public": { type: "boolean" },
        "host-agents": { type: "boolean" },
        ...LIMIT_FLAGS,
      },
      MANAGER_USAGE,
    );
    for (const flag of ["region", "datacenter", "control-plane", "data-dir"] as const) {
      if (!values[flag]) throw new UsageError(`serve regional-manager needs --${flag}`, MANAGER_USAGE);
    }
    const credential = process.env.GLOBALVM_MANAGER_CREDENTIAL;
    if (!credential) {
      throw new UsageError(
        "set GLOBALVM_MANAGER_CREDENTIAL to the secret an admin issued with POST /v1/manager-credentials",
        MANAGER_USAGE,
      );
    }
    const { startRegionalManager } = await import("../regional-manager/service.ts");
    const { managerMetricsAccessFrom } = await import("../regional-manager/metrics.ts");
    const running = await startRegionalManager({
      region: values.region as string,
      datacenter: values.datacenter as string,
      controlPlaneUrl: values["control-plane"] as string,
      credential,
      dataDir: values["data-dir"] as string,
      ...(values["control-plane-keys"] ? { controlPlaneKeysFile: values["control-plane-keys"] } : {}),
      port: parsePort(values.port, 0, MANAGER_USAGE),
      host: values.host,
      ...(values["qemu-user"] ? { qemuUser: values["qemu-user"] } : {}),
      ...guestNetworkOptions(values["guest-network-underlay"], values["guest-network-netns"], MANAGER_USAGE),
      ...(values["host-agents"]
        ? {
            hostAgents: process.env.GLOBALVM_HOST_DOWN_AFTER_MS
              ? { downAfterMs: positiveIntegerFromEnv("GLOBALVM_HOST_DOWN_AFTER_MS") }
              : {},
          }
        : {}),
      limits: managerLimits(values, process.env, MANAGER_USAGE),
      http: httpLimitsFromEnv(),
      ...(values["metrics-public"]
        ? { metricsAccess: { ...managerMetricsAccessFrom(process.env), public: true } }
        : {}),
      // Shortened by tests of a datacenter going down; 10 s otherwise.
      ...(process.env.GLOBALVM_HEARTBEAT_INTERVAL_MS
        ? { heartbeatIntervalMs: positiveIntegerFromEnv("GLOBALVM_HEARTBEAT_INTERVAL_MS") }
        : {}),
      // vCPUs offered (overcommit): by default this host's cores; the orchestration benchmark
      // runs 50 one-vCPU guests on a 2-core machine.
      ...(process.env.GLOBALVM_MANAGER_VCPUS
        ? { capacity: { vcpus: positiveIntegerFromEnv("GLOBALVM_MANAGER_VCPUS") } }
        : {}),
    });
    console.log(`globalvm regional manager of ${values.datacenter} (${values.region}) on ${running.url}`);
    closeOnSignal(() => running.close());
    return new Promise<number>(() => {});
  },
};

export const serveCommand = commandGroup("serve", "run one globalvm service in this process", {
  "control-plane": controlPlane,
  "regional-manager": regionalManager,
  "host-agent": hostAgentCommand,
});

const MIGRATE_USAGE = `Usage: globalvm migrate [--data-dir DIR]

Brings the catalog (DATABASE_URL, else PGlite under --data-dir, default .globalvm) to the
latest migration. The control plane also does this when it starts.
`;

export const migrateCommand: Command = {
  summary: "bring the catalog to the latest migration",
  usage: MIGRATE_USAGE,
  async run(args) {
    const { values } = parseCommandLine(
      args,
      { "data-dir": { type: "string", default: ".globalvm" } },
      MIGRATE_USAGE,
    );
    const { openCatalog } = await import("../api/catalog/db.ts");
    const catalog = openCatalog(catalogLocation(values["data-dir"]));
    await catalog.migrate();
    await catalog.close();
    console.log(`catalog migrated (${catalog.kind})`);
    return EXIT_OK;
  },
};

/** A setting from the environment that must be a whole number above 0; refused by name otherwise. */
function positiveIntegerFromEnv(name: string, env: NodeJS.ProcessEnv = process.env): number {
  const text = env[name] ?? "";
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < 1) {
    throw new CommandFailure(`${name} must be a whole number above 0, not '${text}'`);
  }
  return value;
}
