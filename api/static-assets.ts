// Pages and assets the control plane serves from its own package (/docs, /console): each body
// kept with its gzip, its content hash and ETag. A content-hashed asset URL (`?v=<hash>`) is
// immutable for a year; anything else is revalidated by ETag on every use.
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import type { Context } from "hono";

export const IMMUTABLE = "public, max-age=31536000, immutable";
export const REVALIDATE = "no-cache";

export interface Served {
  body: string;
  /** The body gzipped once, for the clients that accept it. */
  gzip: Uint8Array<ArrayBuffer>;
  type: string;
  etag: string;
  hash: string;
}

export function served(body: string, type: string): Served {
  const hash = createHash("sha256").update(body).digest("base64url").slice(0, 16);
  return { body, gzip: new Uint8Array(gzipSync(body)), type, etag: `"${hash}"`, hash };
}

/** IMMUTABLE when asked under the asset's current hash (`?v=`), else REVALIDATE. */
export function cacheFor(c: Context, asset: Served): string {
  return c.req.query("v") === asset.hash ? IMMUTABLE : REVALIDATE;
}

/** Sends `asset` (304 to a matching If-None-Match); an HTML page carries `csp`. */
export function send(c: Context, asset: Served, cacheControl: string, csp?: string): Response {
  const headers: Record<string, string> = {
    "cache-control": cacheControl,
    etag: asset.etag,
    vary: "accept-encoding",
    "x-content-type-options": "nosniff",
  };
  if (csp && asset.type.startsWith("text/html")) {
    headers["content-security-policy"] = csp;
    headers["referrer-policy"] = "no-referrer";
  }
  const match = c.req.header("if-none-match");
  if (match?.split(",").some((tag) => tag.trim().replace(/^W\//, "") === asset.etag)) {
    return c.body(null, 304, headers);
  }
  headers["content-type"] = asset.type;
  if (/\bgzip\b/.test(c.req.header("accept-encoding") ?? "")) {
    return c.body(asset.gzip, 200, { ...headers, "content-encoding": "gzip" });
  }
  return c.body(asset.body, 200, headers);
}
