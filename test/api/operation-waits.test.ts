// Operation long-polls (issue #12, Low): one notification per change wakes every waiter, in
// this process and in another sharing the Postgres catalog; no waiter polls; a token holds a
// bounded number of waits (429 past it).
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createApp } from "../../api/app.ts";
import { ensureBootstrapAdminToken } from "../../api/bootstrap.ts";
import { type Catalog, openCatalog } from "../../api/catalog/db.ts";
import { insertOperation, updateOperation } from "../../api/catalog/operations.ts";
import { newId } from "../../api/ids.ts";
import { MAX_WAITS_PER_TOKEN } from "../../api/routes/operations/get.ts";
import { createServices } from "../../api/services.ts";
import { resolveKeyEncryptionKey } from "../../api/signing-key-wrap.ts";
import { ADMIN_TOKEN, createTestApi, type TestApi } from "../support/api.ts";
import { CATALOG_KINDS, createTestDatabaseUrl } from "../support/catalogs.ts";
import { strongSecret } from "../support/secrets.ts";

const target = () => ({ type: "vm-group" as const, id: newId("vmGroup") });

describe.each(CATALOG_KINDS)("operation long-polls (%s)", (kind) => {
  let api: TestApi;
  let acme: Awaited<ReturnType<TestApi["createProject"]>>;
  beforeAll(async () => {
    api = await createTestApi(kind);
    acme = await api.createProject("acme");
  });
  afterAll(() => api.close());

  it("wakes every waiter on one change, reads once per waiter, and caps waits per token", async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on("warning", onWarning);
    const selects = vi.spyOn(api.services.db, "select");
    try {
      const operation = await insertOperation(api.services.db, {
        projectId: acme.id,
        kind: "create-vm-group",
        target: target(),
      });
      const path = `/v1/operations/${operation.id}?wait=20s`;
      const started = Date.now();
      const waiting = Array.from({ length: MAX_WAITS_PER_TOKEN }, () =>
        api.call("GET", path, { token: acme.token }),
      );
      await new Promise((resolve) => setTimeout(resolve, 500));
      const refused = await api.call("GET", path, { token: acme.token });
      expect(refused.status).toBe(429);
      expect(refused.body).toMatchObject({ code: "too_many_waits" });
      expect(refused.body.detail).toMatch(new RegExp(`at most ${MAX_WAITS_PER_TOKEN} long-polls`));
      // Another token of the project is not held to the first one's waits.
      const other = api.call("GET", `/v1/operations/${operation.id}?wait=1s`, { token: acme.readToken });
      await updateOperation(
        api.services.db,
        api.services.operationEvents,
        operation.id,
        { state: "running" },
        new Date(),
      );
      const answers = await Promise.all([...waiting, other]);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(answers.map((a) => a.body.state)).toEqual(Array(MAX_WAITS_PER_TOKEN + 1).fill("running"));
      // Each waiter read the operation when it began to wait and once when woken (a poll every
      // 250 ms made it ~2 reads a waiter per half second); a few more are the routes' own.
      expect(selects.mock.calls.length).toBeLessThanOrEqual(4 * (MAX_WAITS_PER_TOKEN + 2));
      // The waits ended: the token may wait again.
      const again = await api.call("GET", `/v1/operations/${operation.id}?wait=1s`, { token: acme.token });
      expect(again.status).toBe(200);
      expect(warnings.filter((w) => w.name === "MaxListenersExceededWarning")).toEqual([]);
    } finally {
      selects.mockRestore();
      process.off("warning", onWarning);
    }
  });

  it("a quiet wait reads the operation twice in all: when it begins and at its deadline", async () => {
    const operation = await insertOperation(api.services.db, {
      projectId: acme.id,
      kind: "create-vm-group",
      target: target(),
    });
    const selects = vi.spyOn(api.services.db, "select");
    try {
      const answer = await api.call("GET", `/v1/operations/${operation.id}?wait=2s`, { token: acme.token });
      expect(answer.body.state).toBe("pending");
      // Token lookup and findOperation by the route, then the wait's own two reads.
      expect(selects.mock.calls.length).toBeLessThanOrEqual(4);
    } finally {
      selects.mockRestore();
    }
  });
});

describe("operation long-polls across two control planes on one Postgres", () => {
  const catalogs: Catalog[] = [];
  afterAll(async () => {
    for (const catalog of catalogs) await catalog.close();
  });

  it("a change made by one wakes the other's waiter at once", async () => {
    const url = await createTestDatabaseUrl();
    for (let i = 0; i < 2; i++) {
      const catalog = openCatalog({ databaseUrl: url });
      catalogs.push(catalog);
      await catalog.migrate();
    }
    const [a, b] = catalogs as [Catalog, Catalog];
    // Control planes on one database share the secret that wraps their signing keys.
    const kek = resolveKeyEncryptionKey({ secret: strongSecret() });
    await ensureBootstrapAdminToken(a.db, ADMIN_TOKEN);
    const servicesA = await createServices(a, kek);
    const servicesB = await createServices(b, kek);
    const app = createApp(servicesA, { log: () => {} });
    const operation = await insertOperation(a.db, {
      projectId: null,
      kind: "create-vm-group",
      target: target(),
    });
    const started = Date.now();
    const waiting = app.request(`/v1/operations/${operation.id}?wait=20s`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    await updateOperation(b.db, servicesB.operationEvents, operation.id, { state: "running" }, new Date());
    const answer = (await (await waiting).json()) as { state: string };
    expect(answer.state).toBe("running");
    expect(Date.now() - started).toBeLessThan(3_000);
  });
});
