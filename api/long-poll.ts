// Conditional and long-polled GETs for every read of the API: each JSON answer carries an ETag
// (a hash of its body); `If-None-Match` with that ETag answers 304; adding `Prefer: wait=N`
// (RFC 7240) holds the request until the answer would differ, asking the handler again every
// POLL_INTERVAL_MS, for at most N seconds (capped at MAX_WAIT_SECONDS), then answers 200 with the
// new body or 304. Clients (the console, scripts) follow any list or object live with no other
// endpoint. Waits are bounded per token and in all, as the operation long-poll is.
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { Context, Env, Handler } from "hono";
import { errors } from "./errors.ts";

export const MAX_WAIT_SECONDS = 30;
export const POLL_INTERVAL_MS = 400;
/** Long-polls one token may hold at once (a console holds three or four). */
export const MAX_LONG_POLLS_PER_TOKEN = 16;
/** Long-polls the whole control plane holds at once. */
export const MAX_LONG_POLLS = 512;

export interface LongPollOptions {
  intervalMs?: number;
  maxWaitSeconds?: number;
  perToken?: number;
  total?: number;
}

/** `Prefer: wait=N` (delta-seconds), in whatever list of preferences; 0 when not asked. */
export function preferredWait(header: string | undefined): number {
  if (!header) return 0;
  for (const preference of header.split(",")) {
    const [token] = preference.split(";");
    const match = /^\s*wait\s*=\s*"?(\d{1,9})"?\s*$/i.exec(token ?? "");
    if (match) return Number(match[1]);
  }
  return 0;
}

/** Whether an If-None-Match header names `etag` (weak comparison, as RFC 9110 asks for GET). */
export function noneMatch(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  const bare = etag.replace(/^W\//, "");
  return header.split(",").some((tag) => {
    const t = tag.trim();
    return t === "*" || t.replace(/^W\//, "") === bare;
  });
}

export function etagOf(body: ArrayBuffer): string {
  return `"${createHash("sha256").update(new Uint8Array(body)).digest("base64url").slice(0, 22)}"`;
}

/** Counts waits per key and in all; `reserve` answers a release, or undefined when full. */
export class WaitLimits {
  private readonly byKey = new Map<string, number>();
  private total = 0;
  private readonly perKey: number;
  private readonly max: number;
  constructor(perKey: number, max: number) {
    this.perKey = perKey;
    this.max = max;
  }
  reserve(key: string): (() => void) | undefined {
    const held = this.byKey.get(key) ?? 0;
    if (held >= this.perKey || this.total >= this.max) return undefined;
    this.byKey.set(key, held + 1);
    this.total++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total--;
      const now = (this.byKey.get(key) ?? 1) - 1;
      if (now === 0) this.byKey.delete(key);
      else this.byKey.set(key, now);
    };
  }
  get held(): number {
    return this.total;
  }
}

interface Tagged {
  response: Response;
  etag: string | undefined;
}

/** A 200 JSON answer gets its ETag (the handler's own, if it set one); any other passes as is. */
async function tag(response: Response): Promise<Tagged> {
  const type = response.headers.get("content-type") ?? "";
  if (response.status !== 200 || !/json/.test(type)) return { response, etag: undefined };
  const own = response.headers.get("etag");
  if (own) return { response, etag: own };
  const body = await response.arrayBuffer();
  const etag = etagOf(body);
  const headers = new Headers(response.headers);
  headers.set("etag", etag);
  return { response: new Response(body, { status: 200, headers }), etag };
}

function notModified(etag: string, extra: Record<string, string> = {}): Response {
  return new Response(null, { status: 304, headers: { etag, ...extra } });
}

/**
 * Wraps a GET handler: tags its answer, answers 304 to a matching If-None-Match and, with
 * `Prefer: wait=N`, asks the handler again until its answer changes or N seconds pass. The
 * handler runs each time as it did first (same context, same validated input, same caller), so
 * an object deleted meanwhile answers its 404 at once.
 */
export function longPolled<E extends Env>(
  handler: Handler<E>,
  limits: WaitLimits,
  options: LongPollOptions = {},
): Handler<E> {
  const interval = options.intervalMs ?? POLL_INTERVAL_MS;
  const cap = options.maxWaitSeconds ?? MAX_WAIT_SECONDS;
  return async (c: Context<E>, next) => {
    const first = await tag((await handler(c, next)) as Response);
    if (!first.etag || !noneMatch(c.req.header("if-none-match"), first.etag)) return first.response;
    const asked = preferredWait(c.req.header("prefer"));
    if (asked === 0) return notModified(first.etag);
    const seconds = Math.min(asked, cap);
    const applied = { "preference-applied": `wait=${seconds}` };
    const key = (c.get("principal" as never) as { tokenId?: string } | undefined)?.tokenId ?? "anonymous";
    const release = limits.reserve(key);
    if (!release) {
      throw errors.tooManyRequests(
        "too_many_waits",
        `A token holds at most ${options.perToken ?? MAX_LONG_POLLS_PER_TOKEN} long-polls (Prefer: wait) at once; wait for one to end, or ask without Prefer: wait.`,
      );
    }
    const signal = c.req.raw.signal;
    const deadline = Date.now() + seconds * 1000;
    try {
      while (!signal.aborted) {
        const left = deadline - Date.now();
        if (left <= 0) break;
        await sleep(Math.min(interval, left), undefined, { signal }).catch(() => {});
        if (signal.aborted) break;
        const again = await tag((await handler(c, next)) as Response);
        if (again.etag !== first.etag) {
          for (const [name, value] of Object.entries(applied)) again.response.headers.set(name, value);
          return again.response;
        }
      }
    } finally {
      release();
    }
    return notModified(first.etag, applied);
  };
}

/**
 * The app as route modules see it, with every GET handler they register long-polled. Methods
 * are bound to the app itself (Hono keeps private fields a proxy cannot reach).
 */
export function withLongPolledReads<E extends Env>(app: OpenAPIHono<E>, options: LongPollOptions = {}) {
  const limits = new WaitLimits(
    options.perToken ?? MAX_LONG_POLLS_PER_TOKEN,
    options.total ?? MAX_LONG_POLLS,
  );
  return new Proxy(app, {
    get(target, property) {
      const value = Reflect.get(target, property, target);
      if (property === "openapi") {
        return (route: { method: string }, handler: Handler<E>, ...rest: unknown[]) =>
          (target.openapi as (...args: unknown[]) => unknown)(
            route,
            route.method === "get" ? longPolled(handler, limits, options) : handler,
            ...rest,
          );
      }
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** What the OpenAPI document says about it, once, in its description. */
export const LONG_POLL_DESCRIPTION = `Every GET that answers JSON sends an \`ETag\`. Send it back in \`If-None-Match\` to get \`304 Not Modified\` while nothing changed; add \`Prefer: wait=N\` (RFC 7240, N ≤ ${MAX_WAIT_SECONDS} seconds) and the request is held until the answer would differ (then 200 with the new body and ETag) or N seconds pass (then 304); either way \`Preference-Applied: wait=N\` says it waited. A token holds at most ${MAX_LONG_POLLS_PER_TOKEN} such waits at once (429 \`too_many_waits\` beyond).`;
