import { Validator } from "@seriousme/openapi-schema-validator";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestApi, type TestApi } from "../support/api.ts";

describe("the OpenAPI document", () => {
  let api: TestApi;
  let document: any;
  beforeAll(async () => {
    api = await createTestApi("pglite");
    document = (await api.call("GET", "/openapi.json", { token: null })).body;
  });
  afterAll(() => api.close());

  it("is valid OpenAPI 3.1 according to the official JSON schema", async () => {
    const validator = new Validator();
    const result = await validator.validate(document);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe("3.1");
  });

  it("documents every route with an operationId, bearer security and problem+json errors", () => {
    const operations = Object.entries(document.paths as Record<string, Record<string, any>>).flatMap(
      ([path, item]) => Object.entries(item).map(([method, op]) => ({ path, method, op })),
    );
    expect(operations.length).toBeGreaterThanOrEqual(28);
    const ids = operations.map(({ op }) => op.operationId);
    expect(new Set(ids).size).toBe(ids.length);
    for (const { path, method, op } of operations) {
      expect(op.security, `${method} ${path}`).toEqual([{ bearer: [] }]);
      expect(op.responses["401"]?.content?.["application/problem+json"], `${method} ${path}`).toBeDefined();
    }
    expect(document.components.securitySchemes.bearer).toMatchObject({ type: "http", scheme: "bearer" });
  });

  it("serves an interactive reference page at /docs", async () => {
    const response = await api.app.request("/docs");
    expect(response.status).toBe(200);
    const html = await response.text();
    expect(html).toContain("/openapi.json");
  });

  it("serves health and readiness", async () => {
    expect((await api.call("GET", "/healthz", { token: null })).body).toEqual({ status: "ok" });
    expect((await api.call("GET", "/readyz", { token: null })).body).toEqual({
      status: "ok",
      database: "pglite",
    });
  });
});
