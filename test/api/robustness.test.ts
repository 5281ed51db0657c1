// Bad input of every kind gets a 4xx problem+json, never a 5xx, and writes nothing.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_BODY_BYTES } from "../../api/app.ts";
import { encodePageToken } from "../../api/pagination.ts";
import { createTestApi, type TestApi } from "../support/api.ts";
import { CATALOG_KINDS } from "../support/catalogs.ts";

describe.each(CATALOG_KINDS)("bad input and idempotency (%s)", (kind) => {
  let api: TestApi;
  let acme: Awaited<ReturnType<TestApi["createProject"]>>;
  beforeAll(async () => {
    api = await createTestApi(kind);
    await api.createRegion("eu-west");
    acme = await api.createProject("acme");
  });
  afterAll(() => api.close());

  const imageCount = async () =>
    (await api.expectStatus(200, "GET", "/v1/images?page_size=200", { token: acme.token })).items.length;

  it("malformed JSON, wrong types, oversized bodies and wrong content types are 4xx and write nothing", async () => {
    const before = await imageCount();
    const cases = [
      { rawBody: "{not json" },
      { rawBody: "[]" },
      { rawBody: "null" },
      { body: { name: 42, origin_region: ["eu-west"] } },
      { body: { name: "x".repeat(10), origin_region: "eu-west", labels: "team=a" } },
      {
        rawBody: JSON.stringify({
          name: "big",
          origin_region: "eu-west",
          labels: { k: "v".repeat(MAX_BODY_BYTES) },
        }),
      },
      { rawBody: "name=x", headers: { "content-type": "application/x-www-form-urlencoded" } },
      { rawBody: "" },
    ];
    for (const options of cases) {
      const response = await api.call("POST", "/v1/images", { token: acme.token, ...options });
      expect(response.status, JSON.stringify(options).slice(0, 80)).toBeGreaterThanOrEqual(400);
      expect(response.status).toBeLessThan(500);
      expect(response.headers.get("content-type")).toContain("application/problem+json");
      expect(response.body.code).toEqual(expect.any(String));
    }
    expect(await imageCount()).toBe(before);
  });

  it("oversized bodies are a 413 with code body_too_large", async () => {
    const response = await api.call("POST", "/v1/images", {
      token: acme.token,
      rawBody: JSON.stringify({
        name: "big",
        origin_region: "eu-west",
        labels: { k: "v".repeat(MAX_BODY_BYTES) },
      }),
    });
    expect([response.status, response.body.code]).toEqual([413, "body_too_large"]);
  });

  it("bad page tokens and page sizes are 400s naming the parameter", async () => {
    for (const query of [
      "page_token=garbage",
      `page_token=${encodePageToken("vmg_01m80qffs32159b2jheq4c7fy0")}`,
      `page_token=${Buffer.from('{"after":"img_\' or 1=1 --"}').toString("base64url")}`,
      "page_size=0",
      "page_size=100000",
      "page_size=ten",
    ]) {
      const response = await api.call("GET", `/v1/images?${query}`, { token: acme.token });
      expect(response.status, query).toBe(400);
      expect(response.body.errors[0].path).toMatch(/^page_(token|size)$/);
    }
  });

  it("every other paginated list refuses a bad page token and page size, naming the parameter", async () => {
    const document = (await api.call("GET", "/openapi.json", { token: null })).body;
    const lists = Object.entries(document.paths as Record<string, Record<string, any>>)
      .filter(([, item]) => item.get?.parameters?.some((p: { name: string }) => p.name === "page_token"))
      .map(([path]) => path)
      .filter((path) => path !== "/v1/images"); // in depth above
    expect(lists).toHaveLength(10);
    const image = await api.expectStatus(201, "POST", "/v1/images", {
      token: acme.token,
      body: { name: "for-pages", origin_region: "eu-west" },
    });
    const group = await api.expectStatus(202, "POST", "/v1/vm-groups", {
      token: acme.token,
      body: {
        name: "for-pages",
        image: image.id,
        region: "eu-west",
        size: 1,
        machine: { vcpus: 1, memory_mb: 128 },
      },
    });
    for (const template of lists) {
      const path = template
        .replace("{id}", template.startsWith("/v1/projects") ? acme.id : group.target.id)
        .replace("{name}", "eu-west-a");
      // The projects' lists are for admins; every other list answers a project token.
      const token = template.startsWith("/v1/projects") ? undefined : acme.token;
      for (const [query, parameter] of [
        ["page_token=garbage", "page_token"],
        ["page_size=0", "page_size"],
      ]) {
        const response = await api.call("GET", `${path}?${query}`, { token });
        expect([response.status, response.body.code], `${path}?${query}`).toEqual([
          400,
          parameter === "page_token" ? "invalid_page_token" : "validation_failed",
        ]);
        expect(response.body.errors.map((e: { path: string }) => e.path)).toEqual([parameter]);
      }
    }
  });

  it("pages through every item exactly once", async () => {
    for (let i = 0; i < 5; i++) {
      await api.expectStatus(201, "POST", "/v1/images", {
        token: acme.token,
        body: { name: `paged-${i}`, origin_region: "eu-west" },
      });
    }
    const seen: string[] = [];
    let token: string | null = null;
    do {
      const query: string = token ? `&page_token=${token}` : "";
      const page = await api.expectStatus(200, "GET", `/v1/images?page_size=2${query}`, {
        token: acme.token,
      });
      seen.push(...page.items.map((i: { name: string }) => i.name));
      token = page.next_page_token;
    } while (token);
    expect(seen.filter((n) => n.startsWith("paged-"))).toEqual([
      "paged-0",
      "paged-1",
      "paged-2",
      "paged-3",
      "paged-4",
    ]);
    expect(new Set(seen).size).toBe(seen.length);
  });

  it("unknown routes are 404 problem+json", async () => {
    const response = await api.call("GET", "/v1/nothing-here", { token: acme.token });
    expect([response.status, response.body.code]).toEqual([404, "route_not_found"]);
  });

  it("Idempotency-Key: the same request returns the first result, a different body is a 409", async () => {
    const headers = { "idempotency-key": "create-web-1" };
    const body = { name: "idem", origin_region: "eu-west" };
    const first = await api.call("POST", "/v1/images", { token: acme.token, body, headers });
    const retry = await api.call("POST", "/v1/images", { token: acme.token, body, headers });
    expect(first.status).toBe(201);
    expect(retry.status).toBe(201);
    expect(retry.body).toEqual(first.body);
    const changed = await api.call("POST", "/v1/images", {
      token: acme.token,
      body: { ...body, name: "idem-2" },
      headers,
    });
    expect([changed.status, changed.body.code]).toEqual([409, "idempotency_key_reused"]);
    const list = await api.expectStatus(200, "GET", "/v1/images?name=idem-2", { token: acme.token });
    expect(list.items).toEqual([]);
    const badKey = await api.call("POST", "/v1/images", {
      token: acme.token,
      body,
      headers: { "idempotency-key": "bad key!" },
    });
    expect(badKey.status).toBe(400);
  });

  it("Idempotency-Key on VM group creation re-attaches to the same operation", async () => {
    const image = await api.expectStatus(201, "POST", "/v1/images", {
      token: acme.token,
      body: { name: "for-group", origin_region: "eu-west" },
    });
    const body = {
      name: "idem-group",
      image: image.id,
      region: "eu-west",
      size: 1,
      machine: { vcpus: 1, memory_mb: 128 },
    };
    const headers = { "idempotency-key": "group-1" };
    const first = await api.call("POST", "/v1/vm-groups", { token: acme.token, body, headers });
    const retry = await api.call("POST", "/v1/vm-groups", { token: acme.token, body, headers });
    expect(first.status).toBe(202);
    expect(retry.status).toBe(202);
    expect(retry.body.id).toBe(first.body.id);
  });
});
