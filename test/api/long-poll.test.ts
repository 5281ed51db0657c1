// Conditional and long-polled GETs (api/long-poll.ts), on every read of the API: ETag,
// If-None-Match → 304, and `Prefer: wait=N` holding the request until the answer changes.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_LONG_POLLS_PER_TOKEN, noneMatch, preferredWait } from "../../api/long-poll.ts";
import { createTestApi, type TestApi } from "../support/api.ts";

describe("long-polled GETs", () => {
  let api: TestApi;
  let acme: Awaited<ReturnType<TestApi["createProject"]>>;
  beforeAll(async () => {
    api = await createTestApi("pglite");
    acme = await api.createProject("acme");
  });
  afterAll(() => api.close());

  const get = (path: string, headers: Record<string, string> = {}, token = acme.token) =>
    api.call("GET", path, { token, headers });
  const timed = async <T>(work: Promise<T>): Promise<[T, number]> => {
    const started = Date.now();
    const value = await work;
    return [value, Date.now() - started];
  };

  it("parses Prefer and If-None-Match", () => {
    expect(preferredWait(undefined)).toBe(0);
    expect(preferredWait("wait=10")).toBe(10);
    expect(preferredWait("respond-async, wait=5")).toBe(5);
    expect(preferredWait("Wait = 7 ; foo")).toBe(7);
    expect(preferredWait("return=minimal")).toBe(0);
    expect(preferredWait("wait=soon")).toBe(0);
    expect(noneMatch('"a", W/"b"', '"b"')).toBe(true);
    expect(noneMatch("*", '"b"')).toBe(true);
    expect(noneMatch('"a"', '"b"')).toBe(false);
  });

  it("is described in the OpenAPI document", async () => {
    const document = (await api.call("GET", "/openapi.json", { token: null })).body;
    expect(document.info.description).toContain("If-None-Match");
    expect(document.info.description).toContain("Prefer: wait=N");
  });

  it("tags every JSON read with an ETag of its body, and answers 304 to it at once", async () => {
    const first = await get("/v1/networks");
    const etag = first.headers.get("etag") as string;
    expect(etag).toMatch(/^"[A-Za-z0-9_-]{22}"$/);
    expect((await get("/v1/networks")).headers.get("etag")).toBe(etag);
    const [again, ms] = await timed(get("/v1/networks", { "if-none-match": etag }));
    expect(again.status).toBe(304);
    expect(again.headers.get("etag")).toBe(etag);
    expect(again.body).toBeNull();
    expect(ms).toBeLessThan(300);
    expect((await get("/v1/networks", { "if-none-match": `W/${etag}` })).status).toBe(304);
    expect((await get("/v1/networks", { "if-none-match": '"other"' })).status).toBe(200);
    // Writes are not tagged; errors are not either.
    const created = await api.call("POST", "/v1/networks", {
      token: acme.token,
      body: { name: "tagged", cidr: "10.21.0.0/16" },
    });
    expect(created.status).toBe(201);
    expect(created.headers.get("etag")).toBeNull();
    expect((await get("/v1/networks/net_doesnotexist")).headers.get("etag")).toBeNull();
  });

  it("with Prefer: wait, holds the request until the answer changes, then answers it", async () => {
    const first = await get("/v1/networks");
    const etag = first.headers.get("etag") as string;
    const later = new Promise((resolve) => setTimeout(resolve, 800)).then(() =>
      api.call("POST", "/v1/networks", {
        token: acme.token,
        body: { name: "arrives", cidr: "10.22.0.0/16" },
      }),
    );
    const [answer, ms] = await timed(get("/v1/networks", { "if-none-match": etag, prefer: "wait=10" }));
    await later;
    expect(answer.status).toBe(200);
    expect(ms).toBeGreaterThanOrEqual(700);
    expect(ms).toBeLessThan(3000);
    expect(answer.headers.get("preference-applied")).toBe("wait=10");
    expect(answer.headers.get("etag")).not.toBe(etag);
    expect(answer.body.items.map((n: { name: string }) => n.name)).toContain("arrives");
  });

  it("answers 304 once the wait passes with nothing changed, and caps the wait at 30 s", async () => {
    const etag = (await get("/v1/regions")).headers.get("etag") as string;
    const [answer, ms] = await timed(get("/v1/regions", { "if-none-match": etag, prefer: "wait=1" }));
    expect(answer.status).toBe(304);
    expect(answer.headers.get("preference-applied")).toBe("wait=1");
    expect(ms).toBeGreaterThanOrEqual(950);
    expect(ms).toBeLessThan(2500);
    const later = new Promise((resolve) => setTimeout(resolve, 300)).then(() => api.createRegion("eu-west"));
    const capped = await get("/v1/regions", { "if-none-match": etag, prefer: "wait=3600" });
    await later;
    expect(capped.status).toBe(200);
    expect(capped.headers.get("preference-applied")).toBe("wait=30");
  });

  it("answers at once when the object goes away meanwhile", async () => {
    const network = await api.expectStatus(201, "POST", "/v1/networks", {
      token: acme.token,
      body: { name: "doomed", cidr: "10.23.0.0/16" },
    });
    const etag = (await get(`/v1/networks/${network.id}`)).headers.get("etag") as string;
    const later = new Promise((resolve) => setTimeout(resolve, 500)).then(() =>
      api.call("DELETE", `/v1/networks/${network.id}`, { token: acme.token }),
    );
    const [answer, ms] = await timed(
      get(`/v1/networks/${network.id}`, { "if-none-match": etag, prefer: "wait=10" }),
    );
    expect((await later).status).toBe(204);
    expect(answer.status).toBe(404);
    expect(ms).toBeLessThan(3000);
  });

  it("still needs a token allowed to read, and a token holds a bounded number of waits", async () => {
    expect((await get("/v1/networks", { prefer: "wait=5" }, null as never)).status).toBe(401);
    const etag = (await get("/v1/networks")).headers.get("etag") as string;
    const aborts: AbortController[] = [];
    const held = Array.from({ length: MAX_LONG_POLLS_PER_TOKEN }, () => {
      const abort = new AbortController();
      aborts.push(abort);
      const request = new Request("http://localhost/v1/networks", {
        headers: { authorization: `Bearer ${acme.token}`, "if-none-match": etag, prefer: "wait=20" },
        signal: abort.signal,
      });
      return Promise.resolve(api.app.request(request)).catch((): Response | null => null);
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const refused = await get("/v1/networks", { "if-none-match": etag, prefer: "wait=20" });
    expect(refused.status).toBe(429);
    expect(refused.body.code).toBe("too_many_waits");
    // Another token is not affected, and a plain conditional GET is never refused.
    expect((await get("/v1/networks", { "if-none-match": etag }, acme.readToken)).status).toBe(304);
    expect((await get("/v1/networks", { "if-none-match": etag })).status).toBe(304);
    // A client that goes away frees its wait within a poll.
    const [ended, ms] = await timed(
      Promise.all(
        held.map((request, i) => {
          aborts[i]?.abort();
          return request;
        }),
      ),
    );
    expect(ended.every((r) => r === null || r.status === 304)).toBe(true);
    expect(ms).toBeLessThan(2000);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const [freed] = await timed(get("/v1/networks", { "if-none-match": etag, prefer: "wait=1" }));
    expect(freed.status).toBe(304);
  });
});
