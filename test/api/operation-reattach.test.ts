// What a client that timed out needs to find its work again: the operations of one target
// still running (GET /v1/operations?target_id=&done=false), and a second DELETE of a VM group
// being deleted answering the deletion under way instead of starting another.
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { operations } from "../../api/catalog/schema.ts";
import { createTestApi, type TestApi } from "../support/api.ts";
import { CATALOG_KINDS } from "../support/catalogs.ts";
import { SMALL_MACHINE } from "../support/project-fixtures.ts";

describe.each(CATALOG_KINDS)("re-attaching to operations (%s)", (kind) => {
  let api: TestApi;
  let acme: Awaited<ReturnType<TestApi["createProject"]>>;
  let other: Awaited<ReturnType<TestApi["createProject"]>>;
  beforeAll(async () => {
    api = await createTestApi(kind);
    await api.createRegion("eu-west");
    acme = await api.createProject("acme");
    other = await api.createProject("other");
  });
  afterAll(() => api.close());

  const ids = (page: { items: { id: string }[] }) => page.items.map((o) => o.id);

  it("lists a target's operations, finished or not, and answers a repeated DELETE with the deletion under way", async () => {
    const image = await api.expectStatus(201, "POST", "/v1/images", {
      token: acme.token,
      body: { name: "web", origin_region: "eu-west" },
    });
    const create = await api.expectStatus(202, "POST", "/v1/vm-groups", {
      token: acme.token,
      body: { name: "web", image: image.id, region: "eu-west", size: 1, machine: SMALL_MACHINE },
    });
    const group = create.target.id as string;
    const mine = `/v1/operations?target_id=${group}`;
    expect(ids(await api.expectStatus(200, "GET", `${mine}&done=false`, { token: acme.token }))).toEqual([
      create.id,
    ]);
    await api.services.db.update(operations).set({ state: "succeeded" }).where(eq(operations.id, create.id));
    expect(ids(await api.expectStatus(200, "GET", `${mine}&done=false`, { token: acme.token }))).toEqual([]);
    expect(ids(await api.expectStatus(200, "GET", `${mine}&done=true`, { token: acme.token }))).toEqual([
      create.id,
    ]);

    const first = await api.expectStatus(202, "DELETE", `/v1/vm-groups/${group}`, { token: acme.token });
    const again = await api.expectStatus(202, "DELETE", `/v1/vm-groups/${group}`, { token: acme.token });
    expect(again.id).toBe(first.id);
    expect(ids(await api.expectStatus(200, "GET", mine, { token: acme.token }))).toEqual([
      create.id,
      first.id,
    ]);
    // Another project sees none of them.
    expect(ids(await api.expectStatus(200, "GET", mine, { token: other.token }))).toEqual([]);
    const bad = await api.expectStatus(400, "GET", `${mine}&done=maybe`, { token: acme.token });
    expect(bad.errors[0].path).toBe("done");
  });
});
