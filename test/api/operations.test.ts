import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { updateOperation } from "../../api/catalog/operations.ts";
import { newId } from "../../api/ids.ts";
import { createTestApi, type TestApi } from "../support/api.ts";
import { CATALOG_KINDS } from "../support/catalogs.ts";

describe.each(CATALOG_KINDS)("operations (%s)", (kind) => {
  let api: TestApi;
  let acme: Awaited<ReturnType<TestApi["createProject"]>>;
  let imageId: string;
  beforeAll(async () => {
    api = await createTestApi(kind);
    await api.createRegion("us-east");
    acme = await api.createProject("acme");
    imageId = (
      await api.expectStatus(201, "POST", "/v1/images", {
        token: acme.token,
        body: { name: "web", origin_region: "us-east" },
      })
    ).id;
  });
  afterAll(() => api.close());

  let counter = 0;
  const startOperation = async () =>
    api.expectStatus(202, "POST", "/v1/vm-groups", {
      token: acme.token,
      body: {
        name: `g${counter++}`,
        image: imageId,
        region: "us-east",
        size: 1,
        machine: { vcpus: 1, memory_mb: 128 },
      },
    });

  describe("happy path", () => {
    it("long-polls: ?wait returns as soon as the operation changes", async () => {
      const operation = await startOperation();
      const started = Date.now();
      const waiting = api.call("GET", `/v1/operations/${operation.id}?wait=20s`, { token: acme.token });
      setTimeout(() => {
        void updateOperation(
          api.services.db,
          api.services.operationEvents,
          operation.id,
          { state: "running", progress: { step: "placing", bytes_done: 0, bytes_total: null, children: [] } },
          new Date(),
        );
      }, 300);
      const response = await waiting;
      const elapsed = Date.now() - started;
      expect(response.status).toBe(200);
      expect(response.body).toMatchObject({ state: "running", progress: { step: "placing" } });
      expect(elapsed).toBeGreaterThanOrEqual(250);
      expect(elapsed).toBeLessThan(5_000);
    });

    it("long-polls time out with the unchanged operation", async () => {
      const operation = await startOperation();
      const started = Date.now();
      const response = await api.expectStatus(200, "GET", `/v1/operations/${operation.id}?wait=400ms`, {
        token: acme.token,
      });
      expect(Date.now() - started).toBeGreaterThanOrEqual(350);
      expect(response.state).toBe("pending");
    });

    it("cancels a pending operation at once, and a second cancel is a 409", async () => {
      const operation = await startOperation();
      const cancelled = await api.expectStatus(200, "POST", `/v1/operations/${operation.id}/cancel`, {
        token: acme.token,
      });
      expect(cancelled).toMatchObject({ state: "cancelled", done: true });
      const again = await api.call("POST", `/v1/operations/${operation.id}/cancel`, { token: acme.token });
      expect(again.status).toBe(409);
    });

    it("lists operations in pages, oldest first", async () => {
      await startOperation();
      await startOperation();
      const first = await api.expectStatus(200, "GET", "/v1/operations?page_size=2", { token: acme.token });
      expect(first.items).toHaveLength(2);
      const second = await api.expectStatus(
        200,
        "GET",
        `/v1/operations?page_size=2&page_token=${first.next_page_token}`,
        {
          token: acme.token,
        },
      );
      expect(second.items[0].id > first.items[1].id).toBe(true);
    });
  });

  describe("errors", () => {
    it("refuses a bad wait, a bad ID and an unknown operation", async () => {
      const operation = await startOperation();
      const badWait = await api.call("GET", `/v1/operations/${operation.id}?wait=soon`, {
        token: acme.token,
      });
      expect([badWait.status, badWait.body.errors[0].path]).toEqual([400, "wait"]);
      const tooLong = await api.call("GET", `/v1/operations/${operation.id}?wait=10m`, { token: acme.token });
      expect(tooLong.status).toBe(400);
      expect((await api.call("GET", "/v1/operations/op_nope", { token: acme.token })).status).toBe(400);
      expect(
        (await api.call("GET", `/v1/operations/${newId("operation")}`, { token: acme.token })).status,
      ).toBe(404);
    });
  });

  describe("security", () => {
    it("a read-only token cannot cancel; another project cannot see", async () => {
      const operation = await startOperation();
      expect(
        (await api.call("POST", `/v1/operations/${operation.id}/cancel`, { token: acme.readToken })).status,
      ).toBe(403);
      const other = await api.createProject("other");
      expect((await api.call("GET", `/v1/operations/${operation.id}`, { token: other.token })).status).toBe(
        404,
      );
      const list = await api.expectStatus(200, "GET", "/v1/operations", { token: other.token });
      expect(list.items).toEqual([]);
    });
  });
});
