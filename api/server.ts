import type { Server } from "node:http";
import { type ServerType, serve } from "@hono/node-server";
import { ConfigurationError } from "../common/configuration-error.ts";
import {
  applyHttpLimits,
  DEFAULT_HTTP_LIMITS,
  type HttpLimits,
  httpServerOptions,
} from "../common/http-limits.ts";
import { createLogger, type LineLog, type Logger, lineLog } from "../common/log.ts";
import { metricsPublicFrom } from "../common/metrics.ts";
import { preparePrivateDir } from "../common/private-dir.ts";
import { createApp } from "./app.ts";
import { type AdminTokenOutcome, ensureBootstrapAdminToken } from "./bootstrap.ts";
import { type CatalogLocation, openCatalog } from "./catalog/db.ts";
import type { RetryPolicy } from "./catalog/job-queues.ts";
import type { Services } from "./env.ts";
import { startDatacenterWatch } from "./orchestrator/datacenter-watch.ts";
import { firewallPusher } from "./orchestrator/firewalls.ts";
import { ReplicaCollector } from "./orchestrator/images/collector.ts";
import {
  deleteImage,
  deleteImageVersion,
  distributeImage,
  replicateImage,
} from "./orchestrator/images/handlers.ts";
import { replicaIdleSecondsFrom } from "./orchestrator/images/plans.ts";
import { type OperationHandlers, OperationRunner } from "./orchestrator/runner.ts";
import { convergeVmGroup, deleteVmGroup } from "./orchestrator/vm-groups.ts";
import { createServices } from "./services.ts";
import {
  type KeyEncryptionKey,
  resolveKeyEncryptionKey,
  SIGNING_KEY_SECRET_VARIABLE,
} from "./signing-key-wrap.ts";

export interface ControlPlaneOptions {
  catalog: CatalogLocation;
  /**
   * The control plane's private data dir (made 0700): the PGlite catalog's parent, and where
   * the signing-key secret file is kept without signingKeySecret. Default: the catalog's
   * data dir; needed with a Postgres catalog unless signingKeySecret is given.
   */
  dataDir?: string;
  /** GLOBALVM_SIGNING_KEY_SECRET: wraps the signing keys in the catalog (api/signing-key-wrap.ts). */
  signingKeySecret?: string;
  port: number;
  host?: string;
  adminToken?: string;
  /** Run the orchestrator's workers in this process (default true). */
  orchestrate?: boolean;
  /** Replaces the operation handlers (tests that watch the runner itself). */
  handlers?: OperationHandlers;
  /** Operations of each kind run at once in this process (default 8). */
  concurrency?: number;
  /** Overrides the operation queues' retry policy (default: 6 attempts, backoff from 1 s). */
  retry?: RetryPolicy;
  /** Replicas outside the policy unused this long are collected (default: GLOBALVM_REPLICA_IDLE_SECONDS, else 1 h). */
  replicaIdleSeconds?: number;
  /**
   * JSON lines (common/log.ts): the request lines and, through `log`'s default, every component's
   * messages. Default: GLOBALVM_LOG_LEVEL on stderr, unless `log` is given (a caller that takes
   * the messages itself, as tests do, then gets no request lines).
   */
  logger?: Logger;
  /** The components' messages (default: into `logger`). */
  log?: LineLog;
  /** /metrics answers without a token (default: GLOBALVM_METRICS_PUBLIC, else false). */
  metricsPublic?: boolean;
  /** Timeouts and connection limit of the HTTP server (DEFAULT_HTTP_LIMITS for what is not set). */
  http?: Partial<HttpLimits>;
}

export interface RunningControlPlane {
  url: string;
  port: number;
  services: Services;
  adminToken: AdminTokenOutcome;
  close(): Promise<void>;
}

export async function startControlPlane(options: ControlPlaneOptions): Promise<RunningControlPlane> {
  const logger = options.logger ?? (options.log ? undefined : createLogger({ service: "control-plane" }));
  const log: LineLog = options.log ?? (logger ? lineLog(logger) : (line) => console.error(line));
  const kek = keyEncryptionKeyFor(options);
  const catalog = openCatalog(options.catalog, log);
  await catalog.migrate();
  let adminToken: AdminTokenOutcome;
  let services: Services;
  try {
    adminToken = await ensureBootstrapAdminToken(catalog.db, options.adminToken);
    services = await createServices(catalog, kek);
  } catch (error) {
    // A weak admin token or a wrong signing-key secret: release the catalog (its lock) too.
    await catalog.close();
    throw error;
  }
  // Rule changes reach the managers from whichever process took them.
  services.firewallChanged = firewallPusher(services, log);
  const app = createApp(services, {
    log,
    ...(logger ? { logger } : {}),
    metricsPublic: options.metricsPublic ?? metricsPublicFrom(process.env),
  });
  const runner =
    options.orchestrate === false
      ? undefined
      : new OperationRunner({
          services,
          handlers: options.handlers ?? {
            "create-vm-group": convergeVmGroup,
            "update-vm-group": convergeVmGroup,
            "delete-vm-group": deleteVmGroup,
            "replicate-image": replicateImage,
            "distribute-image-version": distributeImage,
            "delete-image": deleteImage,
            "delete-image-version": deleteImageVersion,
          },
          concurrency: options.concurrency,
          retry: options.retry,
          log,
        });
  await runner?.start();
  // Down datacenters turn their instances unknown; back up, they are asked for them again.
  const watch = options.orchestrate === false ? undefined : startDatacenterWatch({ services, log });
  const collector =
    options.orchestrate === false
      ? undefined
      : new ReplicaCollector(services, {
          idleSeconds: options.replicaIdleSeconds ?? replicaIdleSecondsFrom(process.env),
          log,
        });
  collector?.start();
  const host = options.host ?? "127.0.0.1";
  const http = { ...DEFAULT_HTTP_LIMITS, ...options.http };
  const server: ServerType = await new Promise((resolve) => {
    const s = serve(
      { fetch: app.fetch, port: options.port, hostname: host, serverOptions: httpServerOptions(http) },
      () => resolve(s),
    );
  });
  applyHttpLimits(server as Server, http);
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : options.port;
  log(`serving on http://${host}:${port} (catalog: ${catalog.kind})`);
  return {
    url: `http://${host}:${port}`,
    port,
    services,
    adminToken,
    async close() {
      watch?.stop();
      await runner?.stop();
      await collector?.stop();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Long-polls would otherwise hold the close for up to a minute.
        (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      });
      await catalog.close();
    },
  };
}

/** Where the signing keys' wrapping key comes from: the secret, else a file in the (private) data dir. */
function keyEncryptionKeyFor(options: ControlPlaneOptions): KeyEncryptionKey {
  if (options.signingKeySecret !== undefined)
    return resolveKeyEncryptionKey({ secret: options.signingKeySecret });
  const dataDir = options.dataDir ?? ("dataDir" in options.catalog ? options.catalog.dataDir : undefined);
  if (dataDir !== undefined) {
    preparePrivateDir(dataDir);
    return resolveKeyEncryptionKey({ dataDir });
  }
  if ("databaseUrl" in options.catalog) {
    // A key only this process knew would make the catalog's keys unusable after a restart.
    throw new ConfigurationError(
      `a control plane on Postgres needs ${SIGNING_KEY_SECRET_VARIABLE} (shared by all control planes on that database) or a data dir for its secret file`,
    );
  }
  return resolveKeyEncryptionKey({});
}
