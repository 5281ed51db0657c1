import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiTokens } from "../../api/catalog/schema.ts";
import { newId } from "../../api/ids.ts";
import { createTestApi, type TestApi } from "../support/api.ts";
import { CATALOG_KINDS } from "../support/catalogs.ts";

describe.each(CATALOG_KINDS)("projects and tokens (%s)", (kind) => {
  let api: TestApi;
  beforeAll(async () => {
    api = await createTestApi(kind);
  });
  afterAll(() => api.close());

  describe("happy path", () => {
    it("an admin creates a project and a token that then works", async () => {
      const project = await api.expectStatus(201, "POST", "/v1/projects", { body: { name: "acme" } });
      expect(project.id).toMatch(/^prj_/);
      const token = await api.expectStatus(201, "POST", `/v1/projects/${project.id}/tokens`, {
        body: { name: "ci" },
      });
      expect(token.secret).toMatch(/^gvm_/);
      expect(token.scopes).toEqual(["read", "write"]);
      const seen = await api.expectStatus(200, "GET", `/v1/projects/${project.id}`, { token: token.secret });
      expect(seen.name).toBe("acme");
      const list = await api.expectStatus(200, "GET", `/v1/projects/${project.id}/tokens`);
      expect(list.items.map((t: { name: string }) => t.name)).toEqual(["ci"]);
      expect(JSON.stringify(list)).not.toContain(token.secret);
    });

    it("a revoked token stops working at once", async () => {
      const { id } = await api.createProject("revoked");
      const extra = await api.expectStatus(201, "POST", `/v1/projects/${id}/tokens`, {
        body: { name: "temp" },
      });
      await api.expectStatus(200, "GET", "/v1/images", { token: extra.secret });
      await api.expectStatus(204, "DELETE", `/v1/tokens/${extra.id}`);
      const after = await api.call("GET", "/v1/images", { token: extra.secret });
      expect(after.status).toBe(401);
    });

    it("an admin lists every project in pages", async () => {
      const ids = [(await api.createProject("listed-a")).id, (await api.createProject("listed-b")).id];
      const seen: string[] = [];
      let pageToken: string | null = null;
      do {
        const query: string = pageToken ? `&page_token=${pageToken}` : "";
        const page = await api.expectStatus(200, "GET", `/v1/projects?page_size=1${query}`);
        expect(page.items.length).toBeLessThanOrEqual(1);
        seen.push(...page.items.map((p: { id: string }) => p.id));
        pageToken = page.next_page_token;
      } while (pageToken);
      expect(seen).toEqual(expect.arrayContaining(ids));
      expect(new Set(seen).size).toBe(seen.length);
    });
  });

  describe("errors", () => {
    it("a duplicate project name is a 409 and a bad name a 400 naming the field", async () => {
      await api.expectStatus(201, "POST", "/v1/projects", { body: { name: "dup" } });
      const dup = await api.call("POST", "/v1/projects", { body: { name: "dup" } });
      expect(dup.status).toBe(409);
      expect(dup.body.code).toBe("already_exists");
      const bad = await api.call("POST", "/v1/projects", { body: { name: "Not A Name" } });
      expect(bad.status).toBe(400);
      expect(bad.body.errors[0].path).toBe("name");
    });

    it("quotas of an unknown project are a 404, a negative quota a 400 naming it", async () => {
      const unknown = await api.call("PATCH", `/v1/projects/${newId("project")}`, {
        body: { quotas: { images: 1 } },
      });
      expect([unknown.status, unknown.body.code]).toEqual([404, "not_found"]);
      const { id } = await api.createProject("bad-quota");
      const negative = await api.call("PATCH", `/v1/projects/${id}`, { body: { quotas: { vcpus: -1 } } });
      expect(negative.status).toBe(400);
      expect(negative.body.errors.map((e: { path: string }) => e.path)).toEqual(["quotas.vcpus"]);
    });

    it("an unknown token is a 404 to revoke, and the token making the call a 409", async () => {
      const unknown = await api.call("DELETE", `/v1/tokens/${newId("token")}`);
      expect([unknown.status, unknown.body.code]).toEqual([404, "not_found"]);
      const [admin] = await api.services.db
        .select({ id: apiTokens.id })
        .from(apiTokens)
        .where(eq(apiTokens.bootstrap, true));
      const self = await api.call("DELETE", `/v1/tokens/${admin?.id}`);
      expect([self.status, self.body.code]).toEqual([409, "token_in_use"]);
      await api.expectStatus(200, "GET", "/v1/projects");
    });

    it("project tokens cannot carry the admin scope", async () => {
      const { id } = await api.createProject("noadmin");
      const response = await api.call("POST", `/v1/projects/${id}/tokens`, {
        body: { name: "x", scopes: ["admin"] },
      });
      expect(response.status).toBe(400);
      expect(response.body.errors[0].path).toBe("scopes");
    });
  });

  describe("security", () => {
    it("refuses a missing, malformed or unknown token with 401 problem+json", async () => {
      for (const token of [null, "not-a-real-token"]) {
        const response = await api.call("GET", "/v1/projects", { token });
        expect(response.status).toBe(401);
        expect(response.headers.get("content-type")).toContain("application/problem+json");
        expect(response.body.code).toBe("unauthenticated");
      }
      const malformed = await api.call("GET", "/v1/projects", {
        token: null,
        headers: { authorization: "Basic abc" },
      });
      expect(malformed.status).toBe(401);
    });

    it("project tokens cannot use admin endpoints", async () => {
      const { token } = await api.createProject("plain");
      for (const [method, path, body] of [
        ["POST", "/v1/projects", { name: "x" }],
        ["GET", "/v1/projects", undefined],
        ["POST", "/v1/regions", { name: "x" }],
      ] as const) {
        const response = await api.call(method, path, { token, body });
        expect(response.status, `${method} ${path}`).toBe(403);
      }
    });

    it("a project token sees its own project only, and another one as 404", async () => {
      const a = await api.createProject("seer-a");
      const b = await api.createProject("seer-b");
      await api.expectStatus(200, "GET", `/v1/projects/${a.id}`, { token: a.token });
      const other = await api.call("GET", `/v1/projects/${b.id}`, { token: a.token });
      expect(other.status).toBe(404);
    });
  });
});
