// `/console`: a read-only web console of the project a token names, served by the control plane
// from its own package (page, stylesheet, script; no CDN). The page needs no token and holds no
// data: its script signs in with a pasted token and reads the public API like any client, so the
// API, not the console, decides what the token may see.
import type { Env, Hono } from "hono";
import { cacheFor, REVALIDATE, send, served } from "../static-assets.ts";
import { CONSOLE_SCRIPT } from "./bundle.gen.ts";
import { CONSOLE_STYLESHEET, renderConsolePage } from "./page.ts";

export const CONSOLE_PATH = "/console";
export const CONSOLE_STYLESHEET_PATH = "/console/console.css";
export const CONSOLE_SCRIPT_PATH = "/console/console.js";

/** Its own stylesheet and script only, and the API of this origin; nothing inline, nothing remote. */
export const CONSOLE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/**
 * The page is revalidated by ETag on every load; the assets it names carry their content hash
 * (`?v=`) and may be kept for a year.
 */
export function registerConsole<E extends Env>(app: Hono<E>) {
  const stylesheet = served(CONSOLE_STYLESHEET, "text/css; charset=utf-8");
  const script = served(CONSOLE_SCRIPT, "text/javascript; charset=utf-8");
  const page = served(
    renderConsolePage({
      stylesheet: `${CONSOLE_STYLESHEET_PATH}?v=${stylesheet.hash}`,
      script: `${CONSOLE_SCRIPT_PATH}?v=${script.hash}`,
    }),
    "text/html; charset=utf-8",
  );
  app.get(CONSOLE_PATH, (c) => send(c, page, REVALIDATE, CONSOLE_CSP));
  app.get(CONSOLE_STYLESHEET_PATH, (c) => send(c, stylesheet, cacheFor(c, stylesheet)));
  app.get(CONSOLE_SCRIPT_PATH, (c) => send(c, script, cacheFor(c, script)));
}
