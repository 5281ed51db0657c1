// The first middleware of both services' apps: each request runs in a trace — the caller's
// when it sent a valid `traceparent`, a new one otherwise — answers its `traceparent` (this
// server's span), and is logged in one line: method, route template (never the path, which may
// carry IDs, nor the query), status and duration — at debug for probes, scrapes and heartbeats,
// which come every few seconds. Everything the request logs or asks of
// another service meanwhile carries the same trace ID (common/trace-context.ts).
import type { MiddlewareHandler } from "hono";
import type { Logger } from "../log.ts";
import { routeTemplate } from "../metrics.ts";
import {
  childSpan,
  formatTraceparent,
  newTrace,
  parseTraceparent,
  TRACEPARENT_HEADER,
  type TraceContext,
  withTrace,
} from "../trace-context.ts";

export interface TraceRequestsOptions {
  /** Where the request lines go; without one, requests are traced but not logged. */
  logger?: Logger;
  /** Told the request's trace before its handler runs (the control plane keeps it on the context). */
  onTrace?: (trace: TraceContext, c: Parameters<MiddlewareHandler>[0]) => void;
}

/** What runs every few seconds by itself (probes, scrapes, heartbeats): logged at debug, not info. */
export function isRoutineRoute(route: string): boolean {
  return /^\/(healthz|readyz|metrics)$/.test(route) || route.endsWith("/heartbeat");
}

export function traceRequests(options: TraceRequestsOptions = {}): MiddlewareHandler {
  return (c, next) => {
    const incoming = parseTraceparent(c.req.header(TRACEPARENT_HEADER));
    const trace = incoming ? childSpan(incoming) : newTrace();
    options.onTrace?.(trace, c);
    return withTrace(trace, async () => {
      const started = performance.now();
      try {
        await next();
      } finally {
        // A handler that threw past onError has no response yet: the server answers 500.
        const status = c.finalized ? c.res.status : 500;
        if (c.finalized) {
          try {
            c.res.headers.set(TRACEPARENT_HEADER, formatTraceparent(trace));
          } catch {
            // An answer with immutable headers (a proxied response) goes without it.
          }
        }
        const route = routeTemplate(c);
        const fields = {
          method: c.req.method,
          route,
          status,
          duration_ms: Math.round((performance.now() - started) * 10) / 10,
          ...(incoming ? { parent_span_id: incoming.spanId } : {}),
        };
        const message = `${c.req.method} ${route} ${status}`;
        if (status >= 500) options.logger?.error(fields, message);
        else if (isRoutineRoute(route)) options.logger?.debug(fields, message);
        else options.logger?.info(fields, message);
      }
    });
  };
}
