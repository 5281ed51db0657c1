// `/docs`: the API reference, rendered by the control plane from its own OpenAPI document, with
// its stylesheet and script served beside it. Nothing is loaded from anywhere else (the CSP says
// so to the browser too), so the page works on a machine without internet.
import type { Env, Hono } from "hono";
import { cacheFor, REVALIDATE, type Served, send, served } from "../static-assets.ts";
import { SCRIPT, STYLESHEET } from "./assets.ts";
import { type ReferenceDocument, renderReference } from "./render.ts";

export const DOCS_PATH = "/docs";
export const STYLESHEET_PATH = "/docs/reference.css";
export const SCRIPT_PATH = "/docs/reference.js";

/** Same-origin only: the page's own stylesheet and script, nothing inline, nothing remote. */
const CONTENT_SECURITY_POLICY =
  "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

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
  app.get(DOCS_PATH, (c) => send(c, render(), REVALIDATE, CONTENT_SECURITY_POLICY));
  app.get(STYLESHEET_PATH, (c) => send(c, stylesheet, cacheFor(c, stylesheet)));
  app.get(SCRIPT_PATH, (c) => send(c, script, cacheFor(c, script)));
}
