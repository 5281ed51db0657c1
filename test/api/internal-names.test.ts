// Internal names as the control plane resolves them for a regional manager, on behalf of one of
// its instances: an instance's name is its address on the group's network, a group's name the
// addresses of its ready instances in the region named, in ordinal order. Names are confined to
// the asking instance's project: another project's name reads exactly as one that does not exist.
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { allocateNetworkIp } from "../../api/catalog/addresses.ts";
import { instances, vmGroups } from "../../api/catalog/schema.ts";
import { newId } from "../../api/ids.ts";
import { createTestApi, type TestApi } from "../support/api.ts";
import { CATALOG_KINDS } from "../support/catalogs.ts";

const machine = { vcpus: 1, memory_mb: 128 };

describe.each(CATALOG_KINDS)("internal names (%s)", (kind) => {
  let api: TestApi;
  let acme: Awaited<ReturnType<TestApi["createProject"]>>;
  let globex: Awaited<ReturnType<TestApi["createProject"]>>;
  let us: string;
  let eu: string;
  /** Instance IDs and network addresses by name (GROUP-ORDINAL, of acme unless said). */
  const ids: Record<string, string> = {};
  const ips: Record<string, string> = {};

  const imageOf = async (token: string) =>
    (
      await api.expectStatus(201, "POST", "/v1/images", {
        token,
        body: { name: "img", origin_region: "us-east" },
      })
    ).id as string;

  /** A group as its project declares it (no orchestrator runs: its instances are recorded below). */
  async function group(token: string, image: string, name: string, region: string, size = 1) {
    const created = await api.expectStatus(202, "POST", "/v1/vm-groups", {
      token,
      body: { name, image, region, size, machine },
    });
    const [row] = await api.services.db.select().from(vmGroups).where(eq(vmGroups.id, created.target.id));
    if (!row) throw new Error("the group was not recorded");
    return row;
  }

  /** An instance recorded as the orchestrator records it, with an address on the group's network unless told. */
  async function instance(
    g: typeof vmGroups.$inferSelect,
    ordinal: number,
    datacenter: string,
    options: { retiring?: boolean; address?: boolean } = {},
  ) {
    const id = newId("instance");
    await api.services.db.transaction(async (tx) =>
      tx.insert(instances).values({
        id,
        vmGroupId: g.id,
        ordinal,
        datacenter,
        retiring: options.retiring ?? false,
        networkId: g.networkId,
        networkIp: options.address === false ? null : await allocateNetworkIp(tx, g.networkId, datacenter),
      }),
    );
    const [row] = await api.services.db.select().from(instances).where(eq(instances.id, id));
    return row as typeof instances.$inferSelect;
  }

  /** The manager of `datacenter` reports the instance's state, as it does when its guest changes. */
  const report = (datacenter: string, token: string, id: string, state: string) =>
    api.expectStatus(204, "PUT", `/v1/datacenters/${datacenter}/instances/${id}`, {
      token,
      body: { state },
    });

  const resolve = (datacenter: string, asker: string, name: string, token: string) =>
    api.call("GET", `/v1/datacenters/${datacenter}/instances/${asker}/names/${encodeURIComponent(name)}`, {
      token,
    });
  /** Asked by acme's web-0, through us-east-a's manager. */
  const ask = (name: string) => resolve("us-east-a", ids["web-0"] as string, name, us);

  beforeAll(async () => {
    api = await createTestApi(kind);
    await api.createRegion("us-east");
    await api.createRegion("eu-west");
    acme = await api.createProject("acme");
    globex = await api.createProject("globex");
    us = (
      await api.expectStatus(201, "POST", "/v1/manager-credentials", {
        body: { region: "us-east", datacenter: "us-east-a" },
      })
    ).secret;
    eu = (
      await api.expectStatus(201, "POST", "/v1/manager-credentials", {
        body: { region: "eu-west", datacenter: "eu-west-a" },
      })
    ).secret;

    const acmeImage = await imageOf(acme.token);
    // web: three instances recorded out of order (so ordinal order is not the order of rows or
    // addresses); 0 and 2 ready, 1 running (booted, not yet ready), and 3 with no address.
    const web = await group(acme.token, acmeImage, "web", "us-east", 4);
    for (const ordinal of [2, 0, 1]) {
      const row = await instance(web, ordinal, "us-east-a");
      ids[`web-${ordinal}`] = row.id;
      ips[`web-${ordinal}`] = row.networkIp as string;
    }
    ids["web-3"] = (await instance(web, 3, "us-east-a", { address: false })).id;
    for (const [name, state] of [
      ["web-0", "ready"],
      ["web-1", "running"],
      ["web-2", "ready"],
      ["web-3", "ready"],
    ] as const)
      await report("us-east-a", us, ids[name] as string, state);

    // roll: in a rolling update. Ordinal 0 has its ready old row and its starting replacement;
    // ordinal 1 only its old row (its replacement not yet recorded).
    const roll = await group(acme.token, acmeImage, "roll", "us-east", 2);
    for (const [name, ordinal, retiring, state] of [
      ["roll-0-old", 0, true, "ready"],
      ["roll-0-new", 0, false, "starting"],
      ["roll-1-old", 1, true, "ready"],
    ] as const) {
      const row = await instance(roll, ordinal, "us-east-a", { retiring });
      ids[name] = row.id;
      ips[name] = row.networkIp as string;
      await report("us-east-a", us, row.id, state);
    }

    // db: declared, with no instance yet. edge: in eu-west, one ready instance.
    await group(acme.token, acmeImage, "db", "us-east");
    const edge = await group(acme.token, acmeImage, "edge", "eu-west");
    const edge0 = await instance(edge, 0, "eu-west-a");
    ids["edge-0"] = edge0.id;
    ips["edge-0"] = edge0.networkIp as string;
    await report("eu-west-a", eu, edge0.id, "ready");

    // globex's api, in the same region and datacenter as acme's web.
    const api0 = await instance(
      await group(globex.token, await imageOf(globex.token), "api", "us-east"),
      0,
      "us-east-a",
    );
    ids["globex-api-0"] = api0.id;
    ips["globex-api-0"] = api0.networkIp as string;
    await report("us-east-a", us, api0.id, "ready");
  });
  afterAll(() => api.close());

  it("an instance's name is its address on its network, whatever its state", async () => {
    for (const name of ["web-0", "web-1", "web-2"]) {
      const response = await ask(`${name}.web.us-east.acme.globalvm.internal`);
      expect([response.status, response.body]).toEqual([
        200,
        { name: `${name}.web.us-east.acme.globalvm.internal`, addresses: [ips[name]] },
      ]);
    }
  });

  it("an instance without an address on the network has a name with no address", async () => {
    const response = await ask("web-3.web.us-east.acme.globalvm.internal");
    expect([response.status, response.body.addresses]).toEqual([200, []]);
  });

  it("a group's name is the addresses of its ready instances in the region, in ordinal order", async () => {
    const response = await ask("web.us-east.acme.globalvm.internal");
    expect(response.status).toBe(200);
    // web-1 is running, not ready; web-3 is ready with no address. web-2's address was given first.
    expect(response.body).toEqual({
      name: "web.us-east.acme.globalvm.internal",
      addresses: [ips["web-0"], ips["web-2"]],
    });
    expect(ips["web-2"]).not.toBe(ips["web-0"]);
  });

  it("a group with no instance yet exists in its region, with no address", async () => {
    expect((await ask("db.us-east.acme.globalvm.internal")).body).toEqual({
      name: "db.us-east.acme.globalvm.internal",
      addresses: [],
    });
    expect((await ask("db.eu-west.acme.globalvm.internal")).status).toBe(404);
  });

  it("names of another region of the project resolve, from either side", async () => {
    expect((await ask("edge.eu-west.acme.globalvm.internal")).body.addresses).toEqual([ips["edge-0"]]);
    const fromEu = await resolve(
      "eu-west-a",
      ids["edge-0"] as string,
      "web-2.web.us-east.acme.globalvm.internal",
      eu,
    );
    expect([fromEu.status, fromEu.body.addresses]).toEqual([200, [ips["web-2"]]]);
  });

  it("reads names in any case and with the root's trailing dot, answering the canonical name", async () => {
    for (const name of [
      "WEB-0.Web.US-EAST.acme.GlobalVM.Internal",
      "web-0.web.us-east.acme.globalvm.internal.",
      "Web-0.WEB.us-east.ACME.globalvm.internal.",
    ]) {
      const response = await ask(name);
      expect([response.status, response.body], name).toEqual([
        200,
        { name: "web-0.web.us-east.acme.globalvm.internal", addresses: [ips["web-0"]] },
      ]);
    }
  });

  it("during a rolling update an ordinal's replacement answers its name, else the instance it replaces", async () => {
    expect((await ask("roll-0.roll.us-east.acme.globalvm.internal")).body.addresses).toEqual([
      ips["roll-0-new"],
    ]);
    expect((await ask("roll-1.roll.us-east.acme.globalvm.internal")).body.addresses).toEqual([
      ips["roll-1-old"],
    ]);
    // The group's name: the instances that are ready, old or new.
    expect((await ask("roll.us-east.acme.globalvm.internal")).body.addresses).toEqual([
      ips["roll-0-old"],
      ips["roll-1-old"],
    ]);
  });

  it("another project's group reads exactly as a name that does not exist", async () => {
    // It exists: globex's own instance resolves it.
    const own = await resolve(
      "us-east-a",
      ids["globex-api-0"] as string,
      "api.us-east.globex.globalvm.internal",
      us,
    );
    expect([own.status, own.body.addresses]).toEqual([200, [ips["globex-api-0"]]]);

    const asked = [
      "api.us-east.globex.globalvm.internal",
      "api-0.api.us-east.globex.globalvm.internal",
      "none.us-east.globex.globalvm.internal",
      "api.us-east.acme.globalvm.internal",
      "none.us-east.nobody.globalvm.internal",
      // acme's own group and instance under another project's label.
      "web.us-east.globex.globalvm.internal",
      "web-0.web.us-east.globex.globalvm.internal",
    ];
    const answers = await Promise.all(asked.map(async (name) => [name, await ask(name)] as const));
    const shapes = answers.map(([name, response]) => {
      expect(response.status, name).toBe(404);
      expect(response.headers.get("content-type"), name).toContain("application/problem+json");
      const text = JSON.stringify(response.body);
      expect(text, name).not.toContain(ids["globex-api-0"]);
      expect(text, name).not.toContain(ips["globex-api-0"]);
      return JSON.parse(text.replaceAll(name, "NAME"));
    });
    expect(shapes[0]).toMatchObject({ status: 404, code: "name_not_found" });
    for (const shape of shapes) expect(shape).toEqual(shapes[0]);
  });

  it("a name of a region where the group has no instance, a malformed instance label, a name outside the zone: 404", async () => {
    for (const name of [
      "web.eu-west.acme.globalvm.internal",
      "web-0.web.eu-west.acme.globalvm.internal",
      "web.mars.acme.globalvm.internal",
      "edge.us-east.acme.globalvm.internal",
      "web-x.web.us-east.acme.globalvm.internal",
      "web-01.web.us-east.acme.globalvm.internal",
      "web-9.web.us-east.acme.globalvm.internal",
      "db-0.web.us-east.acme.globalvm.internal",
      "x.web-0.web.us-east.acme.globalvm.internal",
      "us-east.acme.globalvm.internal",
      "web.us-east.acme.example.com",
    ]) {
      const response = await ask(name);
      expect([response.status, response.body.code], name).toEqual([404, "name_not_found"]);
    }
  });

  it("only for an instance of the datacenter named: another's instance, or none, is a 404", async () => {
    const name = "web.us-east.acme.globalvm.internal";
    // web-0 runs in us-east-a: eu-west-a's manager may not ask in its name.
    const elsewhere = await resolve("eu-west-a", ids["web-0"] as string, name, eu);
    expect([elsewhere.status, elsewhere.body.code]).toEqual([404, "name_not_found"]);
    const unknown = await resolve("us-east-a", newId("instance"), name, us);
    expect([unknown.status, unknown.body.code]).toEqual([404, "name_not_found"]);
  });

  it("is for the datacenter's manager (or an admin): another datacenter's manager or a project token is a 403", async () => {
    const name = "web.us-east.acme.globalvm.internal";
    for (const token of [eu, acme.token, acme.readToken]) {
      const refused = await resolve("us-east-a", ids["web-0"] as string, name, token);
      expect([refused.status, refused.body.code]).toEqual([403, "forbidden"]);
    }
    expect((await resolve("us-east-a", ids["web-0"] as string, name, "nope")).status).toBe(401);
    const admin = await api.call("GET", `/v1/datacenters/us-east-a/instances/${ids["web-0"]}/names/${name}`);
    expect(admin.status).toBe(200);
  });

  it("refuses a name longer than DNS allows with a 400 naming it", async () => {
    const long = `${"a.".repeat(120)}us-east.acme.globalvm.internal`;
    const response = await ask(long);
    expect(response.status).toBe(400);
    expect(response.body.errors.map((e: { path: string }) => e.path)).toEqual(["fqdn"]);
  });
});
