// globalvm_vm_group's refresh, batched. Against the real control plane (in process, PGlite):
// a provider process reads a small project whole with its first refresh and answers the others
// from it, a write by the process makes it read again, and a change made outside Terraform
// shows in the next command's refresh (Terraform starts a provider process per command).
// Against a scripted one: a bigger project is read by ID, in batches, page by page, and
// failures and cancellations end only the reads they concern.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { instances } from "../../api/catalog/schema.ts";
import { newId } from "../../api/ids.ts";
import { CtyNumber, type ObjectValue } from "../../provider/cty/values.ts";
import { createLogger } from "../../provider/framework/logger.ts";
import { createProviderData, type GlobalvmProviderData } from "../../provider/provider-data.ts";
import { vmGroupResource } from "../../provider/resources/vm-group.ts";
import { createBody } from "../../provider/resources/vm-group-config.ts";
import { VmGroupReads } from "../../provider/resources/vm-group-reads.ts";
import { createTestApi, type TestApi } from "../support/api.ts";
import { SMALL_MACHINE } from "../support/project-fixtures.ts";

const context = (providerData: GlobalvmProviderData, signal = new AbortController().signal) => ({
  signal,
  log: createLogger("provider.globalvm", () => {}),
  providerData,
});

/** A prior state as Terraform sends it to ReadResource (the attributes read() looks at). */
const prior = (id: string): ObjectValue => ({
  id,
  network: null,
  placement: null,
  metadata: null,
  metadata_from: null,
  wait_for_ready: false,
  timeouts: null,
});

describe("refreshing groups of the real control plane", () => {
  let api: TestApi;
  let token: string;
  let imageId: string;
  const requests: string[] = [];

  beforeAll(async () => {
    api = await createTestApi("pglite");
    await api.createRegion("us-east");
    token = (await api.createProject("acme")).token;
    imageId = (
      await api.expectStatus(201, "POST", "/v1/images", {
        token,
        body: { name: "web", origin_region: "us-east" },
      })
    ).id;
  });
  afterAll(() => api.close());

  /** What configure() hands resources in a new provider process, its requests recorded. */
  const newProcess = () => {
    const fetchImpl = async (input: string | URL | Request, init?: RequestInit) => {
      const request = new Request(input, init);
      const url = new URL(request.url);
      requests.push(`${request.method} ${url.pathname}${url.search}`);
      return api.app.request(request);
    };
    return createProviderData("http://control-plane.test", token, { fetch: fetchImpl as typeof fetch });
  };
  const createGroup = async (name: string) => {
    const body = { name, image: imageId, region: "us-east", size: 2, machine: SMALL_MACHINE };
    return (await api.expectStatus(202, "POST", "/v1/vm-groups", { token, body })).target.id as string;
  };
  const read = (providerData: GlobalvmProviderData, id: string) =>
    vmGroupResource.read({ state: prior(id) }, context(providerData));

  it("reads a small project whole once per process; an unknown group reads as gone", async () => {
    const ids = [await createGroup("a"), await createGroup("b")];
    const rows = [0, 1].map((ordinal) => ({
      id: newId("instance"),
      vmGroupId: ids[1] as string,
      ordinal,
      datacenter: "us-east-a",
    }));
    await api.catalog.db.insert(instances).values(rows);
    requests.length = 0;

    const providerData = newProcess();
    const reads = await Promise.all([...ids, newId("vmGroup")].map((id) => read(providerData, id)));
    expect(await read(providerData, ids[0] as string)).toEqual(reads[0]);
    expect(requests).toEqual(["GET /v1/vm-groups?page_size=200", "GET /v1/instances?page_size=200"]);
    expect(reads[0]).toMatchObject({ id: ids[0], name: "a", size: new CtyNumber(2), instances: [] });
    expect(reads[1]?.instances).toEqual(
      rows.map((row) => ({
        id: row.id,
        datacenter: "us-east-a",
        host: null,
        address: null,
        network_ip: null,
        state: "pending",
      })),
    );
    expect(reads[2]).toBeNull();
  });

  it("sees drift: a size, metadata and machine changed outside Terraform show in the next command", async () => {
    const id = await createGroup("drifting");
    const plan = newProcess();
    expect(await read(plan, id)).toMatchObject({ size: new CtyNumber(2), metadata: null });

    await api.expectStatus(202, "PATCH", `/v1/vm-groups/${id}`, {
      token,
      body: { size: 3, metadata: { role: "changed" }, machine: { vcpus: 2, memory_mb: 512 } },
    });
    const drifted = {
      size: new CtyNumber(3),
      metadata: { role: "changed" },
      machine: { vcpus: new CtyNumber(2), memory_mb: new CtyNumber(512) },
    };
    expect(await read(newProcess(), id)).toMatchObject(drifted);
    // The process of the earlier command answers from what it read during that command...
    expect(await read(plan, id)).toMatchObject({ size: new CtyNumber(2) });
    // ...until it changes something itself: then it reads again.
    await plan.api.PATCH("/v1/vm-groups/{id}", { params: { path: { id } }, body: { size: 4 } });
    expect(await read(plan, id)).toMatchObject({ ...drifted, size: new CtyNumber(4) });
  });
});

/** A scripted control plane of `count` groups, each with three instances, two a page: never one page in all. */
function fakeControlPlane(count: number) {
  const requests: URL[] = [];
  let failNext = false;
  const json = (status: number, body: unknown) =>
    new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
  const group = (id: string) => ({
    id,
    project_id: "prj_1",
    ...createBody({ name: id, image: "img_1", region: "us-east", size: new CtyNumber(3) }),
    region: "us-east",
    placement: null,
    image_version: null,
    datacenter: "us-east-a",
    state: "ready",
    endpoints: [],
  });
  const ids = Array.from({ length: count }, () => newId("vmGroup"));
  const known = new Set(ids);
  const fetchImpl = async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(new Request(input, init).url);
    requests.push(url);
    if (failNext) {
      failNext = false;
      return json(503, { title: "Service Unavailable", status: 503, code: "unavailable", detail: "busy" });
    }
    const named = (filter: string) =>
      url.searchParams.has(filter) ? url.searchParams.getAll(filter).filter((id) => known.has(id)) : ids;
    if (url.pathname === "/v1/vm-groups") {
      const items = named("id");
      return json(200, { items: items.slice(0, 200).map(group), next_page_token: items[200] ?? null });
    }
    const all = named("vm_group").flatMap((id) =>
      [0, 1, 2].map((i) => ({ id: `ins_${id}_${i}`, vm_group_id: id })),
    );
    const from = Number(url.searchParams.get("page_token") ?? 0);
    const next = from + 2 < all.length ? String(from + 2) : null;
    return json(200, { items: all.slice(from, from + 2), next_page_token: next });
  };
  const reads = new VmGroupReads(
    createProviderData("http://control-plane.test", "token-0123456789abcdef", {
      fetch: fetchImpl as typeof fetch,
    }).api,
  );
  return {
    ids,
    reads,
    requests,
    failNextRequest: () => {
      failNext = true;
    },
  };
}

describe("a project bigger than a page, read by ID", () => {
  it("goes out at most 100 groups at a time, and reads every page of their instances", async () => {
    const fake = fakeControlPlane(150);
    const results = await Promise.all(fake.ids.map((id) => fake.reads.read(id)));
    const groupLists = fake.requests.filter((url) => url.searchParams.has("id"));
    expect(groupLists.map((url) => url.searchParams.getAll("id").length)).toEqual([100, 50]);
    expect(results.map((read) => read?.group.id)).toEqual(fake.ids);
    const last = fake.ids[149];
    expect(results[149]?.instances.map((instance) => instance.id)).toEqual(
      [0, 1, 2].map((i) => `ins_${last}_${i}`),
    );
  });

  it("a failed batch fails its reads with the control plane's answer; the next read asks again", async () => {
    const fake = fakeControlPlane(2);
    const [a, b] = fake.ids as [string, string];
    fake.failNextRequest();
    const failed = await Promise.allSettled([fake.reads.read(a), fake.reads.read(b)]);
    expect(failed.map((result) => result.status)).toEqual(["rejected", "rejected"]);
    expect((failed[0] as PromiseRejectedResult).reason.message).toMatch(/503/);
    expect((await fake.reads.read(b))?.group.id).toBe(b);
  });

  it("a malformed ID fails its read alone, before any request; the others are answered", async () => {
    const fake = fakeControlPlane(1);
    const [bad, good] = await Promise.allSettled([
      fake.reads.read("web-0"),
      fake.reads.read(fake.ids[0] as string),
    ]);
    expect(bad).toMatchObject({
      status: "rejected",
      reason: { message: '"web-0" is not a VM group ID (vmg_…)' },
    });
    expect(good).toMatchObject({ status: "fulfilled", value: { group: { id: fake.ids[0] } } });
    expect(fake.requests.flatMap((url) => url.searchParams.getAll("id"))).toEqual(fake.ids);
  });

  it("a read cancelled while it waits ends at once; the others are answered", async () => {
    const fake = fakeControlPlane(2);
    const [a, b] = fake.ids as [string, string];
    const controller = new AbortController();
    const cancelled = fake.reads.read(a, controller.signal);
    const other = fake.reads.read(b);
    controller.abort(new Error("Terraform asked the provider to stop"));
    await expect(cancelled).rejects.toThrow(/stop/);
    expect((await other)?.group.id).toBe(b);
  });
});
