// `/docs`: the API reference, rendered by the control plane from its own OpenAPI document, with
// its stylesheet and script served beside it. Nothing is loaded from anywhere else (the CSP says
// so to the browser too), so the page works on a machine without internet.
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import type { Context, Env, Hono } from "hono";
import { SCRIPT, STYLESHEET } from "./assets.ts";
import { type ReferenceDocument, renderReference } from "./render.ts";

export const DOCS_PATH = "/docs";
export const STYLESHEET_PATH = "/docs/reference.css";
export const SCRIPT_PATH = "/docs/reference.js";

/** Same-origin only: the page's own stylesheet and script, nothing inline, nothing remote. */
const CONTENT_SECURITY_POLICY =
  "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/** An asset asked for under its current hash never changes; under any other URL, revalidate. */
const IMMUTABLE = "public, max-age=31536000, immutable";
const REVALIDATE = "no-cache";

interface Served {
  body: string;
  /** The body gzipped once, for the clients that accept it (the page shrinks about tenfold). */
  gzip: Uint8Array<ArrayBuffer>;
  type: string;
  etag: string;
  hash: string;
}

function served(body: string, type: string): Served {
  const hash = createHash("sha256").update(body).digest("base64url").slice(0, 16);
  return { body, gzip: new Uint8Array(gzipSync(body)), type, etag: `"${hash}"`, hash };
}

/**
 * Serves the reference at `/docs` (rendered once, on first request, from `document()`) and its
 * two assets. The page names the assets with their content hash (`?v=`), so a browser may keep
 * them for a year; the page itself is revalidated by ETag on every load.
 */
export function registerDocs<E extends Env>(
  app: Hono<E>,
  document: () => unknown,
  options: { documentPath?: string } = {},
) {
  const stylesheet = served(STYLESHEET, "text/css; charset=utf-8");
  const script = served(SCRIPT, "text/javascript; charset=utf-8");
  let page: Served | undefined;
  const render = () => {
    page ??= served(
      renderReference(document() as ReferenceDocument, {
        stylesheet: `${STYLESHEET_PATH}?v=${stylesheet.hash}`,
        script: `${SCRIPT_PATH}?v=${script.hash}`,
        document: options.documentPath ?? "/openapi.json",
      }),
      "text/html; charset=utf-8",
    );
    return page;
  };
  app.get(DOCS_PATH, (c) => send(c, render(), REVALIDATE));
  app.get(STYLESHEET_PATH, (c) => send(c, stylesheet, cacheFor(c, stylesheet)));
  app.get(SCRIPT_PATH, (c) => send(c, script, cacheFor(c, script)));
}

function cacheFor(c: Context, asset: Served): string {
  return c.req.query("v") === asset.hash ? IMMUTABLE : REVALIDATE;
}

function send(c: Context, asset: Served, cacheControl: string): Response {
  const headers: Record<string, string> = {
    "cache-control": cacheControl,
    etag: asset.etag,
    vary: "accept-encoding",
    "x-content-type-options": "nosniff",
  };
  if (asset.type.startsWith("text/html")) headers["content-security-policy"] = CONTENT_SECURITY_POLICY;
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
