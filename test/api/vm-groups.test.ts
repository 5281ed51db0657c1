import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { instances } from "../../api/catalog/schema.ts";
import { newId } from "../../api/ids.ts";
import { createTestApi, type TestApi } from "../support/api.ts";
import { CATALOG_KINDS } from "../support/catalogs.ts";

const machine = { vcpus: 1, memory_mb: 256 };

describe.each(CATALOG_KINDS)("VM groups and instances (%s)", (kind) => {
  let api: TestApi;
  let acme: Awaited<ReturnType<TestApi["createProject"]>>;
  let other: Awaited<ReturnType<TestApi["createProject"]>>;
  let imageId: string;
  beforeAll(async () => {
    api = await createTestApi(kind);
    await api.createRegion("eu-west");
    await api.createRegion("us-east");
    acme = await api.createProject("acme");
    other = await api.createProject("other");
    const image = await api.expectStatus(201, "POST", "/v1/images", {
      token: acme.token,
      body: { name: "web", origin_region: "eu-west" },
    });
    imageId = image.id;
  });
  afterAll(() => api.close());

  const create = (body: Record<string, unknown>, token = acme.token) =>
    api.call("POST", "/v1/vm-groups", { token, body: { image: imageId, size: 2, machine, ...body } });

  describe("happy path", () => {
    it("records a group and answers 202 with an operation", async () => {
      const response = await create({ name: "web", region: "us-east", metadata: { role: "web" } });
      expect(response.status).toBe(202);
      expect(response.body).toMatchObject({ kind: "create-vm-group", state: "pending", done: false });
      const group = await api.expectStatus(200, "GET", `/v1/vm-groups/${response.body.target.id}`, {
        token: acme.token,
      });
      expect(group).toMatchObject({
        name: "web",
        region: "us-east",
        size: 2,
        machine,
        state: "pending",
        datacenter: null,
      });
      const operation = await api.expectStatus(200, "GET", `/v1/operations/${response.body.id}`, {
        token: acme.token,
      });
      expect(operation.id).toBe(response.body.id);
      const list = await api.expectStatus(200, "GET", "/v1/vm-groups", { token: acme.readToken });
      expect(list.items.map((g: { name: string }) => g.name)).toContain("web");
    });

    it("accepts a placement policy with defaults filled in", async () => {
      const response = await create({ name: "placed", placement: { regions: ["eu-west", "us-east"] } });
      expect(response.status).toBe(202);
      const group = await api.expectStatus(200, "GET", `/v1/vm-groups/${response.body.target.id}`, {
        token: acme.token,
      });
      expect(group.placement).toEqual({
        regions: ["eu-west", "us-east"],
        strategy: "image-locality",
        conditions: { require_up: true },
      });
    });

    it("records a regional group: distribution, no single datacenter, none spanned until placed", async () => {
      const response = await create({ name: "regional", region: "eu-west", distribution: "even" });
      expect(response.status).toBe(202);
      const group = await api.expectStatus(200, "GET", `/v1/vm-groups/${response.body.target.id}`, {
        token: acme.token,
      });
      expect(group).toMatchObject({
        distribution: "even",
        datacenter: null,
        datacenters: [],
        region: "eu-west",
      });
      const plain = await create({ name: "single", region: "eu-west" });
      const single = await api.expectStatus(200, "GET", `/v1/vm-groups/${plain.body.target.id}`, {
        token: acme.token,
      });
      expect(single).toMatchObject({ distribution: null, datacenters: [] });
    });

    it("takes metadata from another group and refuses a cycle on update", async () => {
      const a = await create({ name: "db", region: "eu-west" });
      const b = await create({
        name: "app",
        region: "us-east",
        metadata_from: { db_address: { vm_group: a.body.target.id, attribute: "address" } },
      });
      expect(b.status).toBe(202);
      const cycle = await api.call("PATCH", `/v1/vm-groups/${a.body.target.id}`, {
        token: acme.token,
        body: { metadata_from: { app_address: { vm_group: b.body.target.id, attribute: "address" } } },
      });
      expect(cycle.status).toBe(422);
      expect(cycle.body.code).toBe("reference_cycle");
      const referenced = await api.call("DELETE", `/v1/vm-groups/${a.body.target.id}`, { token: acme.token });
      expect(referenced.status).toBe(409);
    });

    it("updates in place and deletes with operations", async () => {
      const created = await create({ name: "resize", region: "us-east" });
      const id = created.body.target.id;
      const update = await api.call("PATCH", `/v1/vm-groups/${id}`, { token: acme.token, body: { size: 3 } });
      expect(update.status).toBe(202);
      expect(update.body.kind).toBe("update-vm-group");
      const group = await api.expectStatus(200, "GET", `/v1/vm-groups/${id}`, { token: acme.token });
      expect(group).toMatchObject({ size: 3, state: "updating" });
      const removal = await api.call("DELETE", `/v1/vm-groups/${id}`, { token: acme.token });
      expect(removal.status).toBe(202);
      expect(removal.body.kind).toBe("delete-vm-group");
    });

    it("joins the project's default network unless told another, by ID or by name", async () => {
      const networks = await api.expectStatus(200, "GET", "/v1/networks", { token: acme.token });
      const defaultId = networks.items.find((n: { name: string }) => n.name === "default").id;
      const lab = await api.expectStatus(201, "POST", "/v1/networks", {
        token: acme.token,
        body: { name: "lab", cidr: "10.40.0.0/16" },
      });
      const get = async (body: Record<string, unknown>) => {
        const created = await create({ region: "us-east", size: 1, ...body });
        expect(created.status).toBe(202);
        return api.expectStatus(200, "GET", `/v1/vm-groups/${created.body.target.id}`, { token: acme.token });
      };
      expect((await get({ name: "on-default" })).network).toBe(defaultId);
      expect((await get({ name: "on-lab-by-name", network: "lab" })).network).toBe(lab.id);
      expect((await get({ name: "on-lab-by-id", network: lab.id })).network).toBe(lab.id);
    });

    it("lists and gets instances recorded for a group", async () => {
      const created = await create({ name: "with-instances", region: "us-east", size: 1 });
      const groupId = created.body.target.id;
      const instanceId = newId("instance");
      await api.catalog.db
        .insert(instances)
        .values({ id: instanceId, vmGroupId: groupId, ordinal: 0, datacenter: "us-east-a" });
      const list = await api.expectStatus(200, "GET", `/v1/vm-groups/${groupId}/instances`, {
        token: acme.token,
      });
      expect(list.items).toHaveLength(1);
      expect(list.items[0]).toMatchObject({
        id: instanceId,
        name: "with-instances-0",
        state: "pending",
        datacenter: "us-east-a",
        address: null,
        network_ip: null,
      });
      const one = await api.expectStatus(200, "GET", `/v1/instances/${instanceId}`, {
        token: acme.readToken,
      });
      expect(one.id).toBe(instanceId);
      expect((await api.call("GET", `/v1/instances/${instanceId}`, { token: other.token })).status).toBe(404);
    });

    it("lists groups by IDs and their instances in two requests, one page at a time", async () => {
      const ids: string[] = [];
      for (const name of ["batch-a", "batch-b", "batch-c"]) {
        ids.push((await create({ name, region: "us-east", size: 2 })).body.target.id);
      }
      const [a, b, c] = ids as [string, string, string];
      const rows = [a, a, b, c].map((vmGroupId, i) => ({
        id: newId("instance"),
        vmGroupId,
        ordinal: i % 2,
        datacenter: "us-east-a",
      }));
      await api.catalog.db.insert(instances).values(rows);
      const read = (path: string, token = acme.readToken) => api.expectStatus(200, "GET", path, { token });

      const groups = await read(`/v1/vm-groups?id=${a}&id=${b}`);
      expect(groups.items.map((g: { id: string }) => g.id)).toEqual([a, b].sort());
      expect((await read(`/v1/vm-groups?id=${c}`)).items.map((g: { name: string }) => g.name)).toEqual([
        "batch-c",
      ]);
      const listed = await read(`/v1/instances?vm_group=${a}&vm_group=${b}`);
      expect(listed.items.map((i: { id: string }) => i.id)).toEqual(
        rows
          .slice(0, 3)
          .map((r) => r.id)
          .sort(),
      );
      expect(listed.items.find((i: { vm_group_id: string }) => i.vm_group_id === b).name).toBe("batch-b-0");

      const paged: string[] = [];
      let token: string | null = null;
      do {
        const page = await read(
          `/v1/instances?vm_group=${a}&vm_group=${b}&page_size=2${token ? `&page_token=${token}` : ""}`,
        );
        paged.push(...page.items.map((i: { id: string }) => i.id));
        token = page.next_page_token;
      } while (token);
      expect(paged).toEqual(listed.items.map((i: { id: string }) => i.id));

      // Another project's IDs filter to nothing; a malformed or too long list is a 400.
      expect((await read(`/v1/vm-groups?id=${a}`, other.token)).items).toEqual([]);
      expect((await read(`/v1/instances?vm_group=${a}`, other.token)).items).toEqual([]);
      expect((await api.call("GET", "/v1/vm-groups?id=web", { token: acme.token })).status).toBe(400);
      const tooMany = Array.from({ length: 101 }, () => `vm_group=${a}`).join("&");
      expect((await api.call("GET", `/v1/instances?${tooMany}`, { token: acme.token })).status).toBe(400);
    });
  });

  describe("errors", () => {
    it("names every bad field at once", async () => {
      const response = await create({
        name: "bad",
        region: "us-east",
        size: 0,
        machine: { vcpus: 0, memory_mb: 1 },
        colour: "red",
      });
      expect(response.status).toBe(400);
      expect(response.body.errors.map((e: { path: string }) => e.path).sort()).toEqual([
        "colour",
        "machine.memory_mb",
        "machine.vcpus",
        "size",
      ]);
    });

    it("needs exactly one of region and placement", async () => {
      const neither = await create({ name: "neither" });
      expect(neither.status).toBe(400);
      expect(neither.body.errors[0].path).toBe("region");
      const both = await create({ name: "both", region: "us-east", placement: { regions: ["us-east"] } });
      expect(both.status).toBe(400);
      expect(both.body.errors[0].path).toBe("placement");
    });

    it("unknown region, image, version or referenced group are 422s naming the field", async () => {
      const region = await create({ name: "r", region: "mars" });
      expect([region.status, region.body.errors[0].path]).toEqual([422, "region"]);
      const policy = await create({ name: "p", placement: { regions: ["eu-west", "venus"] } });
      expect([policy.status, policy.body.errors[0].path]).toEqual([422, "placement.regions[1]"]);
      const image = await create({ name: "i", region: "us-east", image: newId("image") });
      expect([image.status, image.body.errors[0].path]).toEqual([422, "image"]);
      const version = await create({ name: "v", region: "us-east", image_version: 7 });
      expect([version.status, version.body.errors[0].path]).toEqual([422, "image_version"]);
      const ref = await create({
        name: "ref",
        region: "us-east",
        metadata_from: { peer: { vm_group: newId("vmGroup"), attribute: "address" } },
      });
      expect([ref.status, ref.body.errors[0].path]).toEqual([422, "metadata_from.peer.vm_group"]);
      const attribute = await create({
        name: "attr",
        region: "us-east",
        metadata_from: { peer: { vm_group: newId("vmGroup"), attribute: "password" } },
      });
      expect([attribute.status, attribute.body.errors[0].path]).toEqual([
        422,
        "metadata_from.peer.attribute",
      ]);
      const list = await api.expectStatus(200, "GET", "/v1/vm-groups?page_size=200", { token: acme.token });
      const names = list.items.map((g: { name: string }) => g.name);
      for (const name of ["r", "p", "i", "v", "ref", "attr"]) expect(names).not.toContain(name);
    });

    it("an unknown network, or another project's, is a 422 naming the field network", async () => {
      const theirs = await api.expectStatus(200, "GET", "/v1/networks", { token: other.token });
      for (const network of ["nowhere", theirs.items[0].id]) {
        const response = await create({ name: "lost", region: "us-east", network });
        expect(response.status).toBe(422);
        expect(response.body.errors).toEqual([{ path: "network", message: "unknown network" }]);
      }
      const groups = await api.expectStatus(200, "GET", "/v1/vm-groups", { token: acme.token });
      expect(groups.items.map((g: { name: string }) => g.name)).not.toContain("lost");
    });

    it("a group's network cannot change in place: another network is another group", async () => {
      const created = await create({ name: "fixed-net", region: "us-east", size: 1 });
      const response = await api.call("PATCH", `/v1/vm-groups/${created.body.target.id}`, {
        token: acme.token,
        body: { network: "lab" },
      });
      expect(response.status).toBe(400);
      expect(JSON.stringify(response.body)).toContain("network");
    });

    it("a distribution needs a region, may expose ports, and is fixed at creation", async () => {
      const withPolicy = await create({
        name: "dist-policy",
        placement: { regions: ["eu-west"] },
        distribution: "even",
      });
      expect([withPolicy.status, withPolicy.body.errors.map((e: { path: string }) => e.path)]).toEqual([
        400,
        ["distribution"],
      ]);
      const exposed = await create({
        name: "dist-expose",
        region: "eu-west",
        distribution: "any",
        expose: [{ port: 80 }],
      });
      expect(exposed.status).toBe(202);
      const exposedGroup = await api.expectStatus(200, "GET", `/v1/vm-groups/${exposed.body.target.id}`, {
        token: acme.token,
      });
      expect(exposedGroup).toMatchObject({ distribution: "any", expose: [{ port: 80, protocol: "tcp" }] });
      const unknown = await create({ name: "dist-bad", region: "eu-west", distribution: "round-robin" });
      expect([unknown.status, unknown.body.errors[0].path]).toEqual([400, "distribution"]);
      const created = await create({ name: "dist-fixed", region: "eu-west", distribution: "even", size: 1 });
      const change = await api.call("PATCH", `/v1/vm-groups/${created.body.target.id}`, {
        token: acme.token,
        body: { distribution: "any" },
      });
      expect(change.status).toBe(400);
      expect(JSON.stringify(change.body)).toContain("distribution");
    });

    it("an image in use cannot be deleted; the 409 names the groups", async () => {
      const response = await api.call("DELETE", `/v1/images/${imageId}`, { token: acme.token });
      expect(response.status).toBe(409);
      expect(response.body.code).toBe("image_in_use");
      expect(response.body.detail).toContain("web");
    });
  });

  describe("security", () => {
    it("another project cannot see, change or delete a group, nor use its image", async () => {
      const created = await create({ name: "mine", region: "us-east" });
      const id = created.body.target.id;
      for (const [method, body] of [["GET"], ["PATCH", { size: 1 }], ["DELETE"]] as const) {
        expect(
          (await api.call(method, `/v1/vm-groups/${id}`, { token: other.token, body })).status,
          method,
        ).toBe(404);
      }
      expect((await api.call("GET", `/v1/vm-groups/${id}/instances`, { token: other.token })).status).toBe(
        404,
      );
      expect(
        (await api.call("GET", `/v1/operations/${created.body.id}`, { token: other.token })).status,
      ).toBe(404);
      const borrowed = await create({ name: "borrow", region: "us-east" }, other.token);
      expect(borrowed.status).toBe(422);
    });

    it("a read-only token cannot create, change or delete", async () => {
      expect((await create({ name: "ro", region: "us-east" }, acme.readToken)).status).toBe(403);
      const list = await api.expectStatus(200, "GET", "/v1/vm-groups", { token: acme.readToken });
      const id = list.items[0].id;
      expect(
        (await api.call("PATCH", `/v1/vm-groups/${id}`, { token: acme.readToken, body: { size: 1 } })).status,
      ).toBe(403);
      expect((await api.call("DELETE", `/v1/vm-groups/${id}`, { token: acme.readToken })).status).toBe(403);
    });
  });
});
