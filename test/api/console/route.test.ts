// `/console` and its assets (api/console/route.ts): public and data-free (the API decides what a
// token sees), a strict CSP with no inline script, cached by content hash and ETag; and the
// committed script is what scripts/build-console.ts builds from api/console/ui/.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildConsoleSource, CONSOLE_BUNDLE_FILE } from "../../../scripts/build-console.ts";
import { createTestApi, type TestApi } from "../../support/api.ts";

describe("the /console route", () => {
  let api: TestApi;
  let html: string;
  let page: Response;
  beforeAll(async () => {
    api = await createTestApi("pglite");
    page = await api.app.request("/console");
    html = await page.text();
  });
  afterAll(() => api.close());

  const assetsOf = (text: string) => ({
    stylesheet: text.match(/<link rel="stylesheet" href="([^"]+)">/)?.[1] as string,
    script: text.match(/<script src="([^"]+)" defer><\/script>/)?.[1] as string,
  });

  it("serves the page without a token, holding no data and no inline script", async () => {
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(page.headers.get("cache-control")).toBe("no-cache");
    expect(page.headers.get("etag")).toMatch(/^"[A-Za-z0-9_-]{16}"$/);
    expect(page.headers.get("x-content-type-options")).toBe("nosniff");
    expect(page.headers.get("referrer-policy")).toBe("no-referrer");
    const csp = page.headers.get("content-security-policy") as string;
    for (const directive of [
      "default-src 'none'",
      "script-src 'self'",
      "style-src 'self'",
      "connect-src 'self'",
      "form-action 'none'",
      "frame-ancestors 'none'",
    ]) {
      expect(csp).toContain(directive);
    }
    expect(csp).not.toContain("unsafe-inline");
    // One script element, by URL; no inline handlers, no other origin named.
    expect(html.match(/<script/g)?.length).toBe(1);
    expect(html).not.toMatch(/\son[a-z]+=/);
    expect(html).not.toMatch(/https?:\/\//);
    expect(html).toContain('<main id="app">');
  });

  it("leaves authorization to the API: the page is the same for anyone, the API refuses without a token", async () => {
    const api401 = await api.app.request("/v1/images");
    expect(api401.status).toBe(401);
    const project = await api.createProject("console-acme");
    const signedIn = await api.app.request("/console", {
      headers: { authorization: `Bearer ${project.token}` },
    });
    expect(await signedIn.text()).toBe(html);
    const bogus = await api.app.request("/console", { headers: { authorization: "Bearer nope" } });
    expect(bogus.status).toBe(200);
  });

  it("serves its stylesheet and script under hash-named URLs, cached for a year, revalidated otherwise", async () => {
    const { stylesheet, script } = assetsOf(html);
    expect(stylesheet).toMatch(/^\/console\/console\.css\?v=[A-Za-z0-9_-]{16}$/);
    expect(script).toMatch(/^\/console\/console\.js\?v=[A-Za-z0-9_-]{16}$/);
    for (const [url, type] of [
      [stylesheet, "text/css; charset=utf-8"],
      [script, "text/javascript; charset=utf-8"],
    ] as const) {
      const response = await api.app.request(url);
      expect(response.status, url).toBe(200);
      expect(response.headers.get("content-type"), url).toBe(type);
      expect(response.headers.get("cache-control"), url).toBe("public, max-age=31536000, immutable");
      expect(response.headers.get("etag"), url).toBe(`"${url.split("v=")[1]}"`);
      const body = await response.text();
      expect(body.length, url).toBeGreaterThan(1000);
      for (const other of [url.split("?")[0] as string, `${url.split("?")[0]}?v=stale`]) {
        const unversioned = await api.app.request(other);
        expect(unversioned.status, other).toBe(200);
        expect(unversioned.headers.get("cache-control"), other).toBe("no-cache");
      }
      const zipped = await api.app.request(url, { headers: { "accept-encoding": "gzip, br" } });
      expect(zipped.headers.get("content-encoding"), url).toBe("gzip");
      expect(zipped.headers.get("vary"), url).toBe("accept-encoding");
      expect(gunzipSync(Buffer.from(await zipped.arrayBuffer())).toString(), url).toBe(body);
    }
  });

  it("answers 304 to a matching If-None-Match, page and assets alike", async () => {
    const { script } = assetsOf(html);
    for (const url of ["/console", script]) {
      const first = await api.app.request(url);
      const etag = first.headers.get("etag") as string;
      const again = await api.app.request(url, { headers: { "if-none-match": `W/${etag}` } });
      expect(again.status, url).toBe(304);
      expect(again.headers.get("etag"), url).toBe(etag);
      expect(await again.text(), url).toBe("");
    }
  });

  it("answers 404 problem+json for anything else under /console", async () => {
    for (const path of ["/console/", "/console/index.html", "/console/console.js.map"]) {
      const response = await api.app.request(path);
      expect(response.status, path).toBe(404);
      expect(response.headers.get("content-type"), path).toBe("application/problem+json");
    }
    expect((await api.app.request("/console", { method: "POST" })).status).toBe(404);
  });

  it("serves the script built from api/console/ui/ (run npm run console:build)", async () => {
    const fresh = await buildConsoleSource();
    expect(readFileSync(CONSOLE_BUNDLE_FILE, "utf8") === fresh, "api/console/bundle.gen.ts is stale").toBe(
      true,
    );
  });

  it("type-checks the browser code with the DOM's types", () => {
    execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "--noEmit", "-p", "api/console/ui"], {
      stdio: "pipe",
    });
  }, 60_000);
});
