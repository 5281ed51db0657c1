// Prometheus metrics both services share: the HTTP metrics every app records, the /metrics
// answer, and the bounds on label values. Each service instance owns its own prom-client
// Registry (tests start several control planes and managers in one process, and prom-client's
// default global registry would mix them), handed to whatever records into it.
import { timingSafeEqual } from "node:crypto";
import type { Context, MiddlewareHandler } from "hono";
import { matchedRoutes } from "hono/route";
import { Counter, Histogram, Registry } from "prom-client";
import { ConfigurationError } from "./configuration-error.ts";

/** What Prometheus' text exposition format 0.0.4 is served as. */
export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

/** Seconds, for request latencies: from a fast JSON answer to a long-poll (up to a minute). */
export const HTTP_SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

/** GLOBALVM_METRICS_PUBLIC=1 (or true, yes): /metrics answers without a token. */
export const METRICS_PUBLIC_VARIABLE = "GLOBALVM_METRICS_PUBLIC";

/**
 * Whether GLOBALVM_METRICS_PUBLIC opens /metrics. Anything but a yes or a no is refused: a
 * misspelt opt-out that silently kept the endpoint closed (or open) would be found by a scrape.
 */
export function metricsPublicFrom(env: NodeJS.ProcessEnv): boolean {
  const value = env[METRICS_PUBLIC_VARIABLE]?.trim().toLowerCase() ?? "";
  if (["1", "true", "yes"].includes(value)) return true;
  if (["", "0", "false", "no"].includes(value)) return false;
  throw new ConfigurationError(
    `${METRICS_PUBLIC_VARIABLE} must be 1, true or yes (or 0, false, no), not ${JSON.stringify(env[METRICS_PUBLIC_VARIABLE])}`,
  );
}

/** The label of a request that matched no route: its path is the caller's, so never a label. */
export const UNMATCHED_ROUTE = "unmatched";

/**
 * The route template that answered (`/v1/vm-groups/:id`), never the path itself: a path carries
 * IDs, and one series per ID would grow without bound. Middlewares are registered for every
 * method ("ALL"); the first route of a real method among the matches is the handler's.
 */
export function routeTemplate(c: Context): string {
  try {
    const route = matchedRoutes(c).find((r) => r.method !== "ALL");
    return route?.path ?? UNMATCHED_ROUTE;
  } catch {
    // A request that failed before routing (a malformed URL) has no match result.
    return UNMATCHED_ROUTE;
  }
}

/** Requests by route template, method and status, and their latency, of one app. */
export class HttpMetrics {
  readonly requests: Counter<"method" | "route" | "status">;
  readonly seconds: Histogram<"method" | "route">;

  constructor(registry: Registry, prefix: string) {
    this.requests = new Counter({
      name: `${prefix}_http_requests_total`,
      help: "HTTP requests answered, by method, route template and status code.",
      labelNames: ["method", "route", "status"],
      registers: [registry],
    });
    this.seconds = new Histogram({
      name: `${prefix}_http_request_duration_seconds`,
      help: "Time from a request's arrival to its response headers, by method and route template.",
      labelNames: ["method", "route"],
      buckets: HTTP_SECONDS_BUCKETS,
      registers: [registry],
    });
  }

  /** Records every request the app answers, errors included (they are responses by then). */
  middleware(): MiddlewareHandler {
    return async (c, next) => {
      const started = performance.now();
      try {
        await next();
      } finally {
        const method = METHODS.has(c.req.method) ? c.req.method : "OTHER";
        const route = routeTemplate(c);
        // A handler that threw past onError has no response yet: the server answers 500.
        const status = c.finalized ? String(c.res.status) : "500";
        this.requests.inc({ method, route, status });
        this.seconds.observe({ method, route }, (performance.now() - started) / 1000);
      }
    };
  }
}

/** The registry's metrics as Prometheus' text format. */
export async function metricsResponse(registry: Registry): Promise<Response> {
  return new Response(await registry.metrics(), {
    status: 200,
    headers: { "content-type": METRICS_CONTENT_TYPE, "cache-control": "no-store" },
  });
}

/**
 * Whether `given` is `expected`, in time that does not depend on where they differ (a
 * scraper's token is a secret, and compared byte by byte it would leak its prefix).
 */
export function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * A label value taken from a bounded set that is learnt as it goes (peer datacenter names):
 * the first `max` distinct values are kept, any later one reads `other`, so a misbehaving
 * caller cannot make series without end.
 */
export class BoundedLabel {
  readonly #seen = new Set<string>();
  readonly #max: number;
  constructor(max: number) {
    this.#max = max;
  }
  of(value: string): string {
    if (this.#seen.has(value)) return value;
    if (this.#seen.size >= this.#max) return "other";
    this.#seen.add(value);
    return value;
  }
}

/**
 * Runs `load` at most once per `ttlMs` however many gauges ask during a scrape (they are
 * collected one by one), and never twice at once: one scrape costs one load.
 */
export function memoized<T>(load: () => Promise<T>, ttlMs: number): () => Promise<T> {
  let last: { at: number; value: Promise<T> } | undefined;
  return () => {
    const now = performance.now();
    if (!last || now - last.at >= ttlMs) {
      const value = load();
      last = { at: now, value };
      // A failed load is not kept: the next scrape tries again.
      value.catch(() => {
        if (last?.value === value) last = undefined;
      });
    }
    return last.value;
  };
}
