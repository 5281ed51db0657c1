// `/docs` and its assets (api/docs/route.ts): public, typed, cached by hash and ETag, compressed.
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestApi, type TestApi } from "../../support/api.ts";

describe("the /docs route", () => {
  let api: TestApi;
  let html: string;
  let page: Response;
  beforeAll(async () => {
    api = await createTestApi("pglite");
    page = await api.app.request("/docs");
    html = await page.text();
  });
  afterAll(() => api.close());

  const assetsOf = (text: string) => ({
    stylesheet: text.match(/<link rel="stylesheet" href="([^"]+)">/)?.[1] as string,
    script: text.match(/<script src="([^"]+)" defer>/)?.[1] as string,
  });

  it("serves the reference without a token, while the API itself still needs one", async () => {
    expect((await api.app.request("/v1/projects")).status).toBe(401);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(page.headers.get("cache-control")).toBe("no-cache");
    expect(page.headers.get("etag")).toMatch(/^"[A-Za-z0-9_-]{16}"$/);
    expect(page.headers.get("content-security-policy")).toContain("default-src 'none'");
    expect(page.headers.get("content-security-policy")).toContain("script-src 'self'");
    expect(html).toContain('<a href="/openapi.json">');
    const document: any = await (await api.app.request("/openapi.json")).json();
    const count = Object.values<object>(document.paths).reduce((n, item) => n + Object.keys(item).length, 0);
    expect(html.match(/<article class="op"/g)?.length).toBe(count);
  });

  it("serves its stylesheet and script under hash-named URLs, cached for a year", async () => {
    const { stylesheet, script } = assetsOf(html);
    expect(stylesheet).toMatch(/^\/docs\/reference\.css\?v=[A-Za-z0-9_-]{16}$/);
    expect(script).toMatch(/^\/docs\/reference\.js\?v=[A-Za-z0-9_-]{16}$/);
    for (const [url, type] of [
      [stylesheet, "text/css; charset=utf-8"],
      [script, "text/javascript; charset=utf-8"],
    ] as const) {
      const response = await api.app.request(url);
      expect(response.status, url).toBe(200);
      expect(response.headers.get("content-type"), url).toBe(type);
      expect(response.headers.get("cache-control"), url).toBe("public, max-age=31536000, immutable");
      expect(response.headers.get("x-content-type-options"), url).toBe("nosniff");
      expect(response.headers.get("etag"), url).toBe(`"${url.split("v=")[1]}"`);
      expect((await response.text()).length, url).toBeGreaterThan(100);
      for (const other of [url.split("?")[0] as string, `${url.split("?")[0]}?v=stale`]) {
        const unversioned = await api.app.request(other);
        expect(unversioned.status, other).toBe(200);
        expect(unversioned.headers.get("cache-control"), other).toBe("no-cache");
      }
    }
  });

  it("answers 304 to a matching If-None-Match, and the same ETag for the same page", async () => {
    const etag = page.headers.get("etag") as string;
    const again = await api.app.request("/docs", { headers: { "if-none-match": `W/${etag}` } });
    expect(again.status).toBe(304);
    expect(again.headers.get("etag")).toBe(etag);
    expect(await again.text()).toBe("");
    const { stylesheet } = assetsOf(html);
    const css = await api.app.request(stylesheet);
    const cssAgain = await api.app.request(stylesheet, {
      headers: { "if-none-match": `"other", ${css.headers.get("etag")}` },
    });
    expect(cssAgain.status).toBe(304);
    const changed = await api.app.request("/docs", { headers: { "if-none-match": '"something-else"' } });
    expect(changed.status).toBe(200);
    expect(changed.headers.get("etag")).toBe(etag);
  });

  it("gzips for clients that accept it", async () => {
    const response = await api.app.request("/docs", { headers: { "accept-encoding": "gzip, deflate, br" } });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-encoding")).toBe("gzip");
    expect(response.headers.get("vary")).toBe("accept-encoding");
    const zipped = Buffer.from(await response.arrayBuffer());
    expect(zipped.length).toBeLessThan(html.length / 4);
    expect(gunzipSync(zipped).toString("utf8")).toBe(html);
  });

  it("answers an unknown asset with the API's problem document", async () => {
    const response = await api.app.request("/docs/reference.png");
    expect(response.status).toBe(404);
    expect(response.headers.get("content-type")).toBe("application/problem+json");
  });
});
