// A VM group's exposed ports and endpoints through the API: `expose` given at create and fixed
// after it, refused with the field named when malformed, and the endpoints each datacenter's
// manager reports shown on the group until no instance is left there (a regional group has one
// address per port in each of its datacenters).
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { instances, vmGroups } from "../../api/catalog/schema.ts";
import { forgetEndpointsIfEmpty } from "../../api/catalog/vm-groups.ts";
import { newId } from "../../api/ids.ts";
import { createTestApi, type TestApi } from "../support/api.ts";
import { CATALOG_KINDS } from "../support/catalogs.ts";

const machine = { vcpus: 1, memory_mb: 256 };

describe.each(CATALOG_KINDS)("VM group endpoints (%s)", (kind) => {
  let api: TestApi;
  let acme: Awaited<ReturnType<TestApi["createProject"]>>;
  let managerToken: string;
  let otherManagerToken: string;
  let imageId: string;
  beforeAll(async () => {
    api = await createTestApi(kind);
    await api.createRegion("us-east");
    await api.expectStatus(201, "POST", "/v1/datacenters", {
      body: {
        name: "us-east-b",
        region: "us-east",
        capacity: { vcpus: 8, memory_mb: 16_384, disk_bytes: 100e9 },
      },
    });
    acme = await api.createProject("acme");
    managerToken = (
      await api.expectStatus(201, "POST", "/v1/manager-credentials", {
        body: { region: "us-east", datacenter: "us-east-a" },
      })
    ).secret;
    otherManagerToken = (
      await api.expectStatus(201, "POST", "/v1/manager-credentials", {
        body: { region: "us-east", datacenter: "us-east-b" },
      })
    ).secret;
    imageId = (
      await api.expectStatus(201, "POST", "/v1/images", {
        token: acme.token,
        body: { name: "web", origin_region: "us-east" },
      })
    ).id;
  });
  afterAll(() => api.close());

  const create = (body: Record<string, unknown>) =>
    api.call("POST", "/v1/vm-groups", {
      token: acme.token,
      body: { image: imageId, region: "us-east", size: 1, machine, ...body },
    });
  const getGroup = (id: string) => api.expectStatus(200, "GET", `/v1/vm-groups/${id}`, { token: acme.token });
  const report = (instanceId: string, body: Record<string, unknown>, datacenter = "us-east-a") =>
    api.expectStatus(204, "PUT", `/v1/datacenters/${datacenter}/instances/${instanceId}`, {
      token: datacenter === "us-east-a" ? managerToken : otherManagerToken,
      body: { state: "ready", ...body },
    });
  const insertInstance = async (groupId: string, ordinal: number, datacenter: string) => {
    const id = newId("instance");
    await api.catalog.db.insert(instances).values({ id, vmGroupId: groupId, ordinal, datacenter });
    return id;
  };

  /** A group exposing 80 and 443 with one instance recorded in us-east-a. */
  async function groupWithInstance(name: string) {
    const created = await create({ name, expose: [{ port: 80 }, { port: 443, protocol: "tcp" }] });
    expect(created.status).toBe(202);
    const groupId: string = created.body.target.id;
    const instanceId = await insertInstance(groupId, 0, "us-east-a");
    return { groupId, instanceId };
  }

  it("a group exposes nothing unless told, and shows its exposed ports with no endpoint yet", async () => {
    const plain = await create({ name: "plain" });
    expect(await getGroup(plain.body.target.id)).toMatchObject({ expose: [], endpoints: [] });
    const { groupId } = await groupWithInstance("exposed");
    expect(await getGroup(groupId)).toMatchObject({
      expose: [
        { port: 80, protocol: "tcp" },
        { port: 443, protocol: "tcp" },
      ],
      endpoints: [],
    });
  });

  it("a malformed expose is a 400 naming the field", async () => {
    const tooMany = Array.from({ length: 17 }, (_, i) => ({ port: 8000 + i }));
    for (const [expose, path] of [
      [[{ port: 0 }], "expose[0].port"],
      [[{ port: 65_536 }], "expose[0].port"],
      [[{ port: 80.5 }], "expose[0].port"],
      [[{ port: 80 }, { port: 80 }], "expose[1].port"],
      [[{ port: 53, protocol: "udp" }], "expose[0].protocol"],
      [[{ port: 80, host: "x" }], "expose[0].host"],
      [tooMany, "expose"],
    ] as const) {
      const response = await create({ name: "bad-expose", expose });
      expect(response.status, JSON.stringify(expose)).toBe(400);
      expect(
        response.body.errors.map((e: { path: string }) => e.path),
        JSON.stringify(expose),
      ).toEqual([path]);
    }
    const duplicate = await create({ name: "bad-expose", expose: [{ port: 80 }, { port: 80 }] });
    expect(duplicate.body.detail).toContain("port 80 is exposed twice");
  });

  it("an update may repeat expose, in any order, but not change it", async () => {
    const { groupId } = await groupWithInstance("fixed-ports");
    for (const expose of [[{ port: 80 }], [{ port: 80 }, { port: 443 }, { port: 8080 }], []]) {
      const refused = await api.call("PATCH", `/v1/vm-groups/${groupId}`, {
        token: acme.token,
        body: { size: 2, expose },
      });
      expect(refused.status, JSON.stringify(expose)).toBe(422);
      expect(refused.body.code).toBe("expose_immutable");
      expect(refused.body.errors).toEqual([
        { path: "expose", message: "cannot change after the group is created" },
      ]);
      expect(refused.body.detail).toContain("tcp/80, tcp/443");
    }
    expect(await getGroup(groupId)).toMatchObject({ size: 1 });
    const repeated = await api.call("PATCH", `/v1/vm-groups/${groupId}`, {
      token: acme.token,
      body: { size: 2, expose: [{ port: 443 }, { port: 80 }] },
    });
    expect(repeated.status).toBe(202);
    expect(await getGroup(groupId)).toMatchObject({ size: 2, expose: [{ port: 80 }, { port: 443 }] });
  });

  it("endpoints come from the manager's reports; a report without them keeps them", async () => {
    const { groupId, instanceId } = await groupWithInstance("reported");
    await report(instanceId, { endpoints: [{ port: 443, protocol: "tcp", address: "127.0.0.1:30002" }] });
    expect((await getGroup(groupId)).endpoints).toEqual([
      {
        port: 443,
        protocol: "tcp",
        address: "127.0.0.1:30002",
        url: "tcp://127.0.0.1:30002",
        datacenter: "us-east-a",
      },
    ]);
    // Listed in the order the group exposes them; a port it does not expose is not shown.
    await report(instanceId, {
      endpoints: [
        { port: 9999, protocol: "tcp", address: "127.0.0.1:30009" },
        { port: 443, protocol: "tcp", address: "127.0.0.1:30002" },
        { port: 80, protocol: "tcp", address: "127.0.0.1:30001" },
      ],
    });
    const expected = [
      {
        port: 80,
        protocol: "tcp",
        address: "127.0.0.1:30001",
        url: "tcp://127.0.0.1:30001",
        datacenter: "us-east-a",
      },
      {
        port: 443,
        protocol: "tcp",
        address: "127.0.0.1:30002",
        url: "tcp://127.0.0.1:30002",
        datacenter: "us-east-a",
      },
    ];
    const reported = await getGroup(groupId);
    expect(reported.endpoints).toEqual(expected);
    await report(instanceId, { state: "running", address: "10.128.0.2" });
    expect((await getGroup(groupId)).endpoints).toEqual(expected);
    // The same endpoints again, in another order, leave the group as it was.
    await report(instanceId, {
      endpoints: [
        { port: 80, protocol: "tcp", address: "127.0.0.1:30001" },
        { port: 9999, protocol: "tcp", address: "127.0.0.1:30009" },
        { port: 443, protocol: "tcp", address: "127.0.0.1:30002" },
      ],
    });
    expect(await getGroup(groupId)).toEqual(reported);
  });

  it("a report with a malformed endpoint is a 400 naming it, and changes nothing", async () => {
    const { groupId, instanceId } = await groupWithInstance("misreported");
    const bad = await api.call("PUT", `/v1/datacenters/us-east-a/instances/${instanceId}`, {
      token: managerToken,
      body: { state: "ready", endpoints: [{ port: 80, protocol: "tcp", address: "somewhere" }] },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.errors.map((e: { path: string }) => e.path)).toEqual(["endpoints[0].address"]);
    expect((await getGroup(groupId)).endpoints).toEqual([]);
  });

  it("a group with no instance left has no endpoint", async () => {
    const { groupId, instanceId } = await groupWithInstance("emptied");
    await report(instanceId, { endpoints: [{ port: 80, protocol: "tcp", address: "127.0.0.1:30001" }] });
    await forgetEndpointsIfEmpty(api.catalog.db, groupId, "us-east-a");
    expect((await getGroup(groupId)).endpoints).toHaveLength(1);
    await api.catalog.db.delete(instances).where(eq(instances.id, instanceId));
    await forgetEndpointsIfEmpty(api.catalog.db, groupId, "us-east-a");
    expect((await getGroup(groupId)).endpoints).toEqual([]);
  });

  it("a regional group has an address per exposed port in each datacenter, each kept by its own reports", async () => {
    const created = await create({ name: "spread", distribution: "even", size: 2, expose: [{ port: 80 }] });
    expect(created.status).toBe(202);
    const groupId: string = created.body.target.id;
    const inA = await insertInstance(groupId, 0, "us-east-a");
    const inB = await insertInstance(groupId, 1, "us-east-b");
    // Reported at once, as two managers do: neither datacenter's loses the other's.
    await Promise.all([
      report(inA, { endpoints: [{ port: 80, protocol: "tcp", address: "10.0.0.1:30001" }] }),
      report(inB, { endpoints: [{ port: 80, protocol: "tcp", address: "10.0.0.2:30005" }] }, "us-east-b"),
    ]);
    const both = [
      {
        port: 80,
        protocol: "tcp",
        address: "10.0.0.1:30001",
        url: "tcp://10.0.0.1:30001",
        datacenter: "us-east-a",
      },
      {
        port: 80,
        protocol: "tcp",
        address: "10.0.0.2:30005",
        url: "tcp://10.0.0.2:30005",
        datacenter: "us-east-b",
      },
    ];
    expect((await getGroup(groupId)).endpoints).toEqual(both);
    // A datacenter's report replaces only its own.
    await report(inB, { endpoints: [{ port: 80, protocol: "tcp", address: "10.0.0.2:30006" }] }, "us-east-b");
    expect((await getGroup(groupId)).endpoints.map((e: { address: string }) => e.address)).toEqual([
      "10.0.0.1:30001",
      "10.0.0.2:30006",
    ]);
    // A manager may not report for another datacenter's instance.
    const foreign = await api.call("PUT", `/v1/datacenters/us-east-b/instances/${inA}`, {
      token: otherManagerToken,
      body: { state: "ready", endpoints: [{ port: 80, protocol: "tcp", address: "10.9.9.9:1" }] },
    });
    expect(foreign.status).toBe(404);
    // The group shrinks out of us-east-b: its address goes, us-east-a's stays.
    await api.catalog.db.delete(instances).where(eq(instances.id, inB));
    await forgetEndpointsIfEmpty(api.catalog.db, groupId, "us-east-b");
    expect((await getGroup(groupId)).endpoints).toEqual([both[0]]);
  });

  it("endpoints recorded before groups spanned datacenters are the group's datacenter's", async () => {
    const { groupId, instanceId } = await groupWithInstance("recorded-earlier");
    await api.catalog.db
      .update(vmGroups)
      .set({
        datacenter: "us-east-a",
        endpoints: [{ port: 80, protocol: "tcp", address: "127.0.0.1:30001" }],
      })
      .where(eq(vmGroups.id, groupId));
    expect((await getGroup(groupId)).endpoints).toEqual([
      {
        port: 80,
        protocol: "tcp",
        address: "127.0.0.1:30001",
        url: "tcp://127.0.0.1:30001",
        datacenter: "us-east-a",
      },
    ]);
    await report(instanceId, { endpoints: [{ port: 80, protocol: "tcp", address: "127.0.0.1:30003" }] });
    expect((await getGroup(groupId)).endpoints).toEqual([
      {
        port: 80,
        protocol: "tcp",
        address: "127.0.0.1:30003",
        url: "tcp://127.0.0.1:30003",
        datacenter: "us-east-a",
      },
    ]);
  });
});
