// A regional manager's HTTP app, composed as the control plane's is (api/app.ts): one app per
// concern, each declaring its routes with createRoute and answering refusals as problem
// documents of the control plane's shape, and the OpenAPI document they make up together.
import type { OpenAPIHono } from "@hono/zod-openapi";
import { ProblemError, problemDocument, problemResponse } from "../common/http/problem.ts";
import { traceRequests } from "../common/http/trace.ts";
import type { Logger } from "../common/log.ts";
import type { InstanceTokenVerifier } from "../common/tokens/instance-token.ts";
import type { NetworkTokenVerifier } from "../common/tokens/network-token.ts";
import { createHostApp, type HostAppOptions } from "./hosts/app.ts";
import { type Log, managerRoutes, registerTokenSchemes } from "./http/openapi.ts";
import { createInstanceApp } from "./instances/app.ts";
import type { InstanceManager } from "./instances/instance-manager.ts";
import { createMetadataApp } from "./metadata/app.ts";
import { type ManagerMetrics, type ManagerMetricsAccess, metricsHandler } from "./metrics.ts";
import { createNetworkApp } from "./network/app.ts";
import { createReplicaApp } from "./replicas/app.ts";
import { createTransferApp, type TransferAppOptions } from "./transfer/app.ts";

export interface ManagerAppOptions {
  datacenter: string;
  log?: Log;
  /** JSON lines: one per request, in the caller's trace (common/http/trace.ts); without it requests are not logged. */
  logger?: Logger;
  transfer: Omit<TransferAppOptions, "log">;
  /** Without: a manager that only stores and serves chunks (transfer/standalone.ts). */
  replicas?: Omit<Parameters<typeof createReplicaApp>[0], "log">;
  instances?: { instances: InstanceManager; verifier: InstanceTokenVerifier };
  networks?: { instances: InstanceManager; verifier: NetworkTokenVerifier };
  /** The datacenter's host agents register and sync here (a manager that places guests on hosts). */
  hosts?: Omit<HostAppOptions, "log">;
  /** Prometheus metrics: recorded for every request, served at /metrics to whom `access` allows. */
  metrics?: { metrics: ManagerMetrics; access: ManagerMetricsAccess };
}

export function createManagerApp(options: ManagerAppOptions): OpenAPIHono {
  const log = options.log ?? (() => {});
  const app = managerRoutes(log);
  // First: each request runs in the trace its caller sent (the control plane's operation).
  app.use("*", traceRequests(options.logger ? { logger: options.logger } : {}));
  if (options.metrics) {
    app.use("*", options.metrics.metrics.http.middleware());
    app.get("/metrics", metricsHandler(options.metrics.metrics, options.metrics.access));
  }
  app.get("/healthz", (c) => c.json({ status: "ok", datacenter: options.datacenter }));
  app.route(
    "/",
    createTransferApp({
      ...options.transfer,
      log,
      ...(options.metrics ? { recorder: options.metrics.metrics } : {}),
    }),
  );
  if (options.replicas) app.route("/", createReplicaApp({ ...options.replicas, log }));
  if (options.instances) {
    app.route("/", createInstanceApp({ ...options.instances, log }));
    app.route("/", createMetadataApp({ ...options.instances, log }));
  }
  if (options.networks) app.route("/", createNetworkApp({ ...options.networks, log }));
  if (options.hosts) app.route("/", createHostApp({ ...options.hosts, log }));
  app.notFound((c) =>
    problemResponse(
      problemDocument(new ProblemError(404, "route_not_found", `No route for ${c.req.method} ${c.req.path}`)),
    ),
  );
  registerTokenSchemes(app);
  app.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: {
      title: `globalvm regional manager (${options.datacenter})`,
      version: "1.0.0",
      description:
        "One datacenter's manager: uploads and peer transfers of image chunks, replicas the control plane asks it to hold or drop, the instances it runs and their networks' firewalls. Every route takes a token the control plane signed. Errors are RFC 9457 problem+json with a stable `code`, as the control plane's.",
    },
    servers: [{ url: "/" }],
  });
  return app;
}
