// The control-plane HTTP app: OpenAPI routes, auth, and the problem+json error model.
import { OpenAPIHono } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import { requestFieldErrors } from "../common/http/field-errors.ts";
import { traceRequests } from "../common/http/trace.ts";
import { type LineLog, type Logger, lineLog } from "../common/log.ts";
import { authenticate } from "./auth.ts";
import { registerConsole } from "./console/route.ts";
import { registerDocs } from "./docs/route.ts";
import type { AppEnv, Services } from "./env.ts";
import { ApiError, errors, problemOf } from "./errors.ts";
import { LONG_POLL_DESCRIPTION } from "./long-poll.ts";
import { registerMetricsRoute } from "./metrics-route.ts";
import { registerRoutes } from "./routes/index.ts";

export const MAX_BODY_BYTES = 1024 * 1024;

export interface AppOptions {
  /** Component messages (default: through `logger`, else stderr). */
  log?: LineLog;
  /** JSON lines: one per request, with its trace (common/http/trace.ts); without it requests are not logged. */
  logger?: Logger;
  /** /metrics without a token (GLOBALVM_METRICS_PUBLIC=1); otherwise a `metrics` or admin token. */
  metricsPublic?: boolean;
}

export function createApp(services: Services, options: AppOptions = {}) {
  const log = options.log ?? (options.logger ? lineLog(options.logger) : (line) => console.error(line));
  const app = new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) throw errors.validation(requestFieldErrors(result.error, result.target));
    },
  });

  // First: every request runs in its trace, answers its traceparent and is logged once.
  app.use(
    "*",
    traceRequests({
      ...(options.logger ? { logger: options.logger } : {}),
      onTrace: (trace, c) => c.set("trace", trace),
    }),
  );
  app.use("*", async (c, next) => {
    c.set("services", services);
    await next();
  });
  // Every answer counted by route template; an app built without services (the OpenAPI
  // document's generator) records nothing.
  const recordHttp = services.metrics?.http.middleware();
  if (recordHttp) app.use("*", recordHttp);
  app.use(
    "/v1/*",
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: () => {
        throw errors.tooLarge(MAX_BODY_BYTES);
      },
    }),
  );
  app.use("/v1/*", authenticate);

  app.onError((error, c) => {
    const apiError = toApiError(error);
    if (apiError.status >= 500) log(`[ERROR] ${c.req.method} ${c.req.path}: ${error.stack ?? error}`);
    return c.json(problemOf(apiError, c.req.path), apiError.status as 400, {
      "content-type": "application/problem+json",
    });
  });
  app.notFound((c) =>
    c.json(
      problemOf(new ApiError(404, "route_not_found", `No route for ${c.req.method} ${c.req.path}`)),
      404,
      {
        "content-type": "application/problem+json",
      },
    ),
  );

  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get("/readyz", async (c) => {
    try {
      await services.catalog.ping();
      return c.json({ status: "ok", database: services.catalog.kind });
    } catch (error) {
      return c.json({ status: "unavailable", database: services.catalog.kind, detail: String(error) }, 503);
    }
  });

  // Public keys of transfer and instance tokens, for regional managers to verify them.
  app.get("/.well-known/jwks.json", async (c) => c.json(await services.signingKeys.jwks()));
  registerMetricsRoute(app, { public: options.metricsPublic ?? false });

  app.openAPIRegistry.registerComponent("securitySchemes", "bearer", {
    type: "http",
    scheme: "bearer",
    description: "An API token: an admin token or a project token with read/write scopes.",
  });
  registerRoutes(app);

  const documentConfig = {
    openapi: "3.1.0",
    info: {
      title: "globalvm control plane",
      version: "1.0.0",
      description:
        "Declare VM images and VM groups in any region. Long-running changes return an Operation (HTTP 202). Errors are RFC 9457 problem+json with a stable `code`.\n\n" +
        LONG_POLL_DESCRIPTION,
    },
    servers: [{ url: "/" }],
  };
  app.doc31("/openapi.json", documentConfig);
  // The reference page, rendered here from the same document: no CDN, works offline.
  registerDocs(app, () => app.getOpenAPI31Document(documentConfig));
  // The web console: a page and its script, reading this same API with a pasted token.
  registerConsole(app);
  return app;
}

export type App = ReturnType<typeof createApp>;

/** Postgres error codes that are the caller's fault, not the server's. */
function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof HTTPException) {
    if (error.status === 400)
      return errors.malformedJson(error.message || "The request body is not valid JSON.");
    return new ApiError(error.status, "http_error", error.message);
  }
  const code = postgresCode(error);
  if (code === "23505") return errors.conflict("already_exists", "An object with this name already exists.");
  if (code === "23503")
    return errors.unprocessable(
      "reference_not_found",
      "The request refers to an object that does not exist.",
    );
  return new ApiError(500, "internal", "The server failed to handle the request; it was logged.");
}

function postgresCode(error: unknown): string | undefined {
  for (let e: unknown = error, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}
