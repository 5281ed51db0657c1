// GET /metrics of the control plane, apart from api/metrics.ts so that the metrics the
// services carry (api/env.ts) do not depend on the auth that reads those services.
import type { OpenAPIHono } from "@hono/zod-openapi";
import { metricsResponse } from "../common/metrics.ts";
import { authenticate, requireScope } from "./auth.ts";
import type { AppEnv } from "./env.ts";

/**
 * GET /metrics, outside the OpenAPI document (as /openapi.json is): Prometheus' text format.
 * It needs a token with the `metrics` scope or an admin token, unless the operator made it
 * public (GLOBALVM_METRICS_PUBLIC=1): the figures name datacenters and counts of every project.
 */
export function registerMetricsRoute(app: OpenAPIHono<AppEnv>, options: { public: boolean }): void {
  if (!options.public) app.use("/metrics", authenticate);
  app.get("/metrics", async (c) => {
    if (!options.public) requireScope(c, "metrics");
    const { metrics } = c.get("services");
    return metricsResponse(metrics.registry);
  });
}
