// Who may call each route the control plane serves. The table is keyed by the routes of the
// app's own OpenAPI document and checked against it both ways, so no route ships without its
// row. Each row runs every kind of caller against fresh objects of project A: no token is a
// 401; the wrong kind of token a 403 "forbidden"; project B naming A's objects a 404 that reads
// exactly as for an object that does not exist and mentions nothing of A's; a read token's
// write a 403. None of those may write anything to the catalog. Last, the caller the route is
// for succeeds with the same request, so the refusals are the callers', not the request's.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_TOKEN, createTestApi, type TestApi } from "../support/api.ts";
import { catalogSnapshot, changedTables } from "../support/catalog-snapshot.ts";
import {
  firewallRule,
  ghostOf,
  type ProjectFixtures,
  projectFixtures,
  replicaReport,
  SMALL_MACHINE,
} from "../support/project-fixtures.ts";

const capacity = { vcpus: 16, memory_mb: 32_768, disk_bytes: 100e9 };
const registration = { region: "eu-west", manager_url: "http://127.0.0.1:9001", capacity };
const heartbeat = {
  manager_url: "http://127.0.0.1:9001",
  capacity,
  free: capacity,
  chunk_count: 0,
  image_count: 0,
};
/** In the name of project A and of each of its objects: B's answers must never contain it. */
const MARK = "alpha-private";

/**
 * writer, reader: project A's read-write and read-only tokens; otherWriter: project B's
 * read-write token; euManager: the credential of eu-west-a, the datacenter the manager rows
 * name; usManager: the credential of us-east-a.
 */
const CALLERS = ["anonymous", "admin", "writer", "reader", "otherWriter", "euManager", "usManager"] as const;
type Caller = (typeof CALLERS)[number];

/** Succeeds with the row's `ok`; a write succeeds once, last, called by the policy's `by`. */
const OK = "ok";
/** Allowed too, but a write's success is made by `by` only. */
const ALLOWED = "allowed";
/** Project B naming project A's objects: the row's `otherProject`. */
const OTHER = "other";
type Outcome = number | typeof OK | typeof ALLOWED | typeof OTHER;
interface Policy {
  by: Caller;
  who: Record<Caller, Outcome>;
}
function policy(by: Caller, outcomes: Outcome[]): Policy {
  if (outcomes.length !== CALLERS.length) throw new Error(`a policy names every caller: ${CALLERS}`);
  return { by, who: Object.fromEntries(CALLERS.map((caller, i) => [caller, outcomes[i]])) as Policy["who"] };
}

// The rules of api/auth.ts as the routes apply them:
// admin: requireScope("admin"), so a project token is refused even about its own project.
// read, write: requireProject, so only the token's project, and an admin token has none.
// tenantRead, tenantWrite: requireScope, answered within the token's project; an admin sees all.
// sharedRead: regions and datacenters, where every project places groups: any user token reads.
// managerOf: requireManagerOf(eu-west-a, the datacenter in the path): its manager, or an admin.
// puller: requireManager, and a manager learns a version's sources only while it pulls it.
// biome-ignore format: a matrix reads best aligned
const POLICIES = {
  //                             anonymous admin    writer reader otherWriter euManager usManager
  admin:       policy("admin",     [401,    OK,      403,   403,   403,        403,      403]),
  read:        policy("reader",    [401,    403,     OK,    OK,    OTHER,      403,      403]),
  write:       policy("writer",    [401,    403,     OK,    403,   OTHER,      403,      403]),
  tenantRead:  policy("reader",    [401,    OK,      OK,    OK,    OTHER,      403,      403]),
  tenantWrite: policy("writer",    [401,    ALLOWED, OK,    403,   OTHER,      403,      403]),
  sharedRead:  policy("reader",    [401,    OK,      OK,    OK,    OK,         403,      403]),
  managerOf:   policy("euManager", [401,    ALLOWED, 403,   403,   403,        OK,       403]),
  puller:      policy("admin",     [401,    OK,      403,   403,   403,        404,      OK ]),
};
type PolicyName = keyof typeof POLICIES;

const CODES: Record<number, string> = { 401: "unauthenticated", 403: "forbidden", 404: "not_found" };

/** A path, or a path and its JSON body. */
type Request = string | [string, unknown];
interface Row {
  policy: PolicyName;
  ok: number;
  /** The request, naming objects of project A made for this row alone. */
  request: (f: ProjectFixtures) => Promise<Request>;
  /**
   * Project B's writer naming A's objects: 404 for one in the path, 200 (without them) for a
   * list, 422 naming the field for one in the body. Absent where the request names nothing of
   * A's, so B would only make its own object.
   */
  otherProject?: 200 | 404 | [422, string];
  /** A read that is a POST: it changes nothing, so a read token may make it. */
  readOnly?: true;
  /** A write whose success records nothing in the catalog (an upload ticket is only signed). */
  recordsNothing?: true;
}
/** A row whose route names no object of a project. */
const unscoped = (policy: PolicyName, ok: number, request: Row["request"]): Row => ({ policy, ok, request });
/** A row of a route of project objects. */
const scoped = (
  policy: PolicyName,
  ok: number,
  otherProject: Row["otherProject"],
  request: Row["request"],
  more: Partial<Row> = {},
): Row => ({ policy, ok, otherProject, request, ...more });

const ROUTES: Record<string, Row> = {
  "POST /v1/projects": unscoped("admin", 201, async (f) => ["/v1/projects", { name: f.fresh() }]),
  "GET /v1/projects": unscoped("admin", 200, async () => "/v1/projects"),
  "GET /v1/projects/{id}": scoped("tenantRead", 200, 404, async (f) => `/v1/projects/${f.project}`),
  "PATCH /v1/projects/{id}": unscoped("admin", 200, async (f) => [
    `/v1/projects/${f.project}`,
    { quotas: { images: 400 } },
  ]),
  "POST /v1/projects/{id}/tokens": unscoped("admin", 201, async (f) => [
    `/v1/projects/${f.project}/tokens`,
    { name: "x" },
  ]),
  "GET /v1/projects/{id}/tokens": unscoped("admin", 200, async (f) => `/v1/projects/${f.project}/tokens`),
  "DELETE /v1/tokens/{id}": unscoped("admin", 204, async (f) => `/v1/tokens/${await f.token()}`),
  "POST /v1/regions": unscoped("admin", 201, async (f) => ["/v1/regions", { name: f.fresh() }]),
  "GET /v1/regions": unscoped("sharedRead", 200, async () => "/v1/regions"),
  "GET /v1/regions/{name}": unscoped("sharedRead", 200, async () => "/v1/regions/eu-west"),
  "POST /v1/datacenters": unscoped("admin", 201, async (f) => [
    "/v1/datacenters",
    { name: f.fresh(), region: "eu-west", capacity },
  ]),
  "GET /v1/datacenters": unscoped("sharedRead", 200, async () => "/v1/datacenters"),
  "GET /v1/datacenters/{name}": unscoped("sharedRead", 200, async () => "/v1/datacenters/eu-west-a"),
  "GET /v1/datacenters/{name}/hosts": unscoped(
    "sharedRead",
    200,
    async () => "/v1/datacenters/eu-west-a/hosts",
  ),
  "PUT /v1/datacenters/{name}": unscoped("managerOf", 200, async () => [
    "/v1/datacenters/eu-west-a",
    registration,
  ]),
  "GET /v1/datacenters/{name}/credential-check": unscoped(
    "managerOf",
    204,
    async () => "/v1/datacenters/eu-west-a/credential-check",
  ),
  "POST /v1/datacenters/{name}/heartbeat": unscoped("managerOf", 200, async () => [
    "/v1/datacenters/eu-west-a/heartbeat",
    heartbeat,
  ]),
  "POST /v1/manager-credentials": unscoped("admin", 201, async (f) => [
    "/v1/manager-credentials",
    { region: "eu-west", datacenter: f.fresh() },
  ]),
  "POST /v1/signing-keys": unscoped("admin", 201, async () => ["/v1/signing-keys", {}]),

  "POST /v1/networks": scoped("write", 201, undefined, async (f) => [
    "/v1/networks",
    { name: f.fresh(), cidr: f.cidr() },
  ]),
  "GET /v1/networks": scoped("read", 200, 200, async (f) => f.network().then(() => "/v1/networks")),
  "GET /v1/networks/{id}": scoped("read", 200, 404, async (f) => `/v1/networks/${await f.network()}`),
  "PATCH /v1/networks/{id}": scoped("write", 200, 404, async (f) => [
    `/v1/networks/${await f.network()}`,
    { labels: { x: "y" } },
  ]),
  "DELETE /v1/networks/{id}": scoped("write", 204, 404, async (f) => `/v1/networks/${await f.network()}`),
  "POST /v1/networks/{id}/firewall-rules": scoped("write", 201, 404, async (f) => [
    `/v1/networks/${await f.network()}/firewall-rules`,
    firewallRule(f.fresh()),
  ]),
  "GET /v1/networks/{id}/firewall-rules": scoped(
    "read",
    200,
    404,
    async (f) => `/v1/networks/${await f.network()}/firewall-rules`,
  ),
  "GET /v1/networks/{id}/firewall-rules/{rule_id}": scoped("read", 200, 404, async (f) => f.rule()),
  "PATCH /v1/networks/{id}/firewall-rules/{rule_id}": scoped("write", 200, 404, async (f) => [
    await f.rule(),
    { priority: 10 },
  ]),
  "DELETE /v1/networks/{id}/firewall-rules/{rule_id}": scoped("write", 204, 404, async (f) => f.rule()),

  "POST /v1/images": scoped("write", 201, undefined, async (f) => [
    "/v1/images",
    { name: f.fresh(), origin_region: "eu-west" },
  ]),
  "GET /v1/images": scoped("read", 200, 200, async (f) => f.image().then(() => "/v1/images")),
  "GET /v1/images/{id}": scoped("read", 200, 404, async (f) => `/v1/images/${await f.image()}`),
  "GET /v1/images/{id}/versions": scoped(
    "read",
    200,
    404,
    async (f) => `/v1/images/${await f.committedImage()}/versions`,
  ),
  "GET /v1/images/{id}/versions/{version}": scoped(
    "read",
    200,
    404,
    async (f) => `/v1/images/${await f.committedImage()}/versions/1`,
  ),
  "PATCH /v1/images/{id}/versions/{version}": scoped("write", 200, 404, async (f) => [
    `/v1/images/${await f.committedImage()}/versions/1`,
    { state: "deprecated" },
  ]),
  "DELETE /v1/images/{id}/versions/{version}": scoped(
    "write",
    202,
    404,
    async (f) => `/v1/images/${await f.twoVersionImage()}/versions/1`,
  ),
  "GET /v1/image-families/{family}": scoped(
    "read",
    200,
    404,
    async (f) => `/v1/image-families/${await f.family()}`,
  ),
  "PATCH /v1/images/{id}": scoped("write", 200, 404, async (f) => [
    `/v1/images/${await f.image()}`,
    { labels: { x: "y" } },
  ]),
  "DELETE /v1/images/{id}": scoped("write", 202, 404, async (f) => `/v1/images/${await f.image()}`),
  "POST /v1/images/{id}/uploads": scoped(
    "write",
    201,
    404,
    async (f) => `/v1/images/${await f.image()}/uploads`,
    { recordsNothing: true },
  ),
  "POST /v1/images/{id}/replicas": scoped("write", 202, 404, async (f) => [
    `/v1/images/${await f.committedImage()}/replicas`,
    { region: "us-east" },
  ]),
  "GET /v1/images/{id}/versions/{version}/sources": unscoped(
    "puller",
    200,
    async (f) => `/v1/images/${await f.pulledImage()}/versions/1/sources`,
  ),
  "PUT /v1/datacenters/{name}/replicas/{image_id}/versions/{version}": unscoped(
    "managerOf",
    204,
    async (f) => {
      const image = await f.image();
      return [`/v1/datacenters/eu-west-a/replicas/${image}/versions/1`, replicaReport(`eu-${image}`)];
    },
  ),

  "POST /v1/vm-groups": scoped("write", 202, [422, "image"], async (f) => [
    "/v1/vm-groups",
    {
      name: f.fresh(),
      image: await f.image(),
      network: await f.network(),
      region: "eu-west",
      size: 1,
      machine: SMALL_MACHINE,
    },
  ]),
  "GET /v1/vm-groups": scoped("read", 200, 200, async (f) => f.vmGroup().then(() => "/v1/vm-groups")),
  "GET /v1/vm-groups/{id}": scoped(
    "read",
    200,
    404,
    async (f) => `/v1/vm-groups/${(await f.vmGroup()).group}`,
  ),
  "PATCH /v1/vm-groups/{id}": scoped("write", 202, 404, async (f) => [
    `/v1/vm-groups/${(await f.vmGroup()).group}`,
    { size: 2 },
  ]),
  "DELETE /v1/vm-groups/{id}": scoped(
    "write",
    202,
    404,
    async (f) => `/v1/vm-groups/${(await f.vmGroup()).group}`,
  ),
  "GET /v1/vm-groups/{id}/instances": scoped(
    "read",
    200,
    404,
    async (f) => `/v1/vm-groups/${(await f.instance()).group}/instances`,
  ),
  "GET /v1/instances": scoped("read", 200, 200, async (f) => f.instance().then(() => "/v1/instances")),
  "GET /v1/instances/{id}": scoped(
    "read",
    200,
    404,
    async (f) => `/v1/instances/${(await f.instance()).instance}`,
  ),
  "PUT /v1/datacenters/{name}/instances/{instance_id}": unscoped("managerOf", 204, async (f) => [
    `/v1/datacenters/eu-west-a/instances/${(await f.instance()).instance}`,
    { state: "running" },
  ]),
  "GET /v1/datacenters/{name}/instances/{instance_id}/names/{fqdn}": unscoped("managerOf", 200, async (f) => {
    const { instance, groupName } = await f.instance();
    return `/v1/datacenters/eu-west-a/instances/${instance}/names/${groupName}-0.${groupName}.eu-west.${MARK}.globalvm.internal`;
  }),
  "POST /v1/placements:explain": scoped(
    "read",
    200,
    [422, "image"],
    async (f) => [
      "/v1/placements:explain",
      { image: await f.committedImage(), region: "eu-west", size: 1, machine: SMALL_MACHINE },
    ],
    { readOnly: true },
  ),

  "GET /v1/operations": scoped("tenantRead", 200, 200, async (f) => f.vmGroup().then(() => "/v1/operations")),
  "GET /v1/operations/{id}": scoped(
    "tenantRead",
    200,
    404,
    async (f) => `/v1/operations/${(await f.vmGroup()).operation}`,
  ),
  "POST /v1/operations/{id}/cancel": scoped(
    "tenantWrite",
    200,
    404,
    async (f) => `/v1/operations/${(await f.vmGroup()).operation}/cancel`,
  ),
};

/** Routes outside /v1: no token needed, and nothing they answer is a project's. */
const PUBLIC_ROUTES = [
  "GET /.well-known/jwks.json",
  "GET /console",
  "GET /console/console.css",
  "GET /console/console.js",
  "GET /docs",
  "GET /docs/reference.css",
  "GET /docs/reference.js",
  "GET /healthz",
  "GET /openapi.json",
  "GET /readyz",
];

/**
 * Routes outside /v1 and outside the document that do need a token: /metrics takes a
 * `metrics` or admin token (test/api/metrics.test.ts checks every caller).
 */
const UNDOCUMENTED_WITH_TOKEN = ["GET /metrics"];

function templatePattern(template: string): RegExp {
  const escaped = template.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\{[a-z_]+\}/g, "[^/]+");
  return new RegExp(`^${escaped}$`);
}

function split(key: string): [string, string] {
  const [method, template] = key.split(" ");
  return [method as string, template as string];
}

/** The success the row checks last: a write, made once. Reads succeed with every allowed caller. */
const isWrite = (key: string) => split(key)[0] !== "GET" && !ROUTES[key]?.readOnly;

describe("route security: every route of the control plane, every kind of caller", () => {
  let api: TestApi;
  let alpha: Awaited<ReturnType<TestApi["createProject"]>>;
  let tokens: Record<Caller, string | null>;
  /** METHOD path → the statuses the OpenAPI document declares for it. */
  let documented: Map<string, number[]>;

  beforeAll(async () => {
    api = await createTestApi("pglite");
    const document = (await api.call("GET", "/openapi.json", { token: null })).body;
    documented = new Map(
      Object.entries(document.paths as Record<string, Record<string, { responses: object }>>).flatMap(
        ([path, item]) =>
          Object.entries(item).map(([method, operation]) => [
            `${method.toUpperCase()} ${path}`,
            Object.keys(operation.responses).map(Number),
          ]),
      ),
    );
    const managers: Record<string, string> = {};
    for (const region of ["eu-west", "us-east"]) {
      await api.expectStatus(201, "POST", "/v1/regions", { body: { name: region } });
      const datacenter = `${region}-a`;
      const credential = await api.expectStatus(201, "POST", "/v1/manager-credentials", {
        body: { region, datacenter },
      });
      managers[region] = credential.secret;
      const url = `http://127.0.0.1:${region === "eu-west" ? 9001 : 9002}`;
      await api.expectStatus(200, "PUT", `/v1/datacenters/${datacenter}`, {
        token: credential.secret,
        body: { ...registration, region, manager_url: url },
      });
      await api.expectStatus(200, "POST", `/v1/datacenters/${datacenter}/heartbeat`, {
        token: credential.secret,
        body: { ...heartbeat, manager_url: url },
      });
    }
    alpha = await api.createProject(MARK);
    const bravo = await api.createProject("bravo");
    tokens = {
      anonymous: null,
      admin: ADMIN_TOKEN,
      writer: alpha.token,
      reader: alpha.readToken,
      otherWriter: bravo.token,
      euManager: managers["eu-west"] as string,
      usManager: managers["us-east"] as string,
    };
  });
  afterAll(() => api.close());

  it("has a row for every route of the OpenAPI document, and none for a route it lacks", () => {
    const routes = [...documented.keys()];
    expect(
      routes.filter((key) => !(key in ROUTES)),
      "routes without a row",
    ).toEqual([]);
    expect(
      Object.keys(ROUTES).filter((key) => !documented.has(key)),
      "rows of no route",
    ).toEqual([]);
  });

  it("serves nothing the document leaves out but a few public routes, which need no token", async () => {
    const served = new Set(
      api.app.routes
        .filter((route) => route.method !== "ALL")
        .map((route) => `${route.method} ${route.path.replace(/\/:([a-z_]+)/g, "/{$1}")}`),
    );
    expect([...served].filter((key) => !documented.has(key)).sort()).toEqual(
      [...PUBLIC_ROUTES, ...UNDOCUMENTED_WITH_TOKEN].sort(),
    );
    for (const key of UNDOCUMENTED_WITH_TOKEN) {
      const [method, path] = split(key);
      expect((await api.call(method, path, { token: null })).status, key).toBe(401);
    }
    for (const key of PUBLIC_ROUTES) {
      const [method, path] = split(key);
      expect((await api.call(method, path, { token: null })).status, key).toBe(200);
    }
  });

  it("refuses a call without a token, and a read token any write a project token may make", () => {
    for (const [name, { who }] of Object.entries(POLICIES)) expect(who.anonymous, name).toBe(401);
    const writes = Object.keys(ROUTES).filter((key) => {
      const who: Record<Caller, Outcome> = POLICIES[(ROUTES[key] as Row).policy].who;
      return isWrite(key) && (who.writer === OK || who.writer === ALLOWED);
    });
    expect(writes.length).toBeGreaterThan(10);
    for (const key of writes) {
      expect(POLICIES[(ROUTES[key] as Row).policy].who.reader, key).toBe(403);
    }
  });

  it("declares in the OpenAPI document every answer the table expects of it", () => {
    const undeclared = Object.entries(ROUTES).flatMap(([key, row]) => {
      const who: Record<Caller, Outcome> = POLICIES[row.policy].who;
      const statuses = Object.values(who).flatMap((outcome) => {
        if (outcome === OK) return [row.ok];
        if (outcome === OTHER)
          return row.otherProject === undefined ? [] : [[row.otherProject].flat()[0] as number];
        return outcome === ALLOWED ? [] : [outcome];
      });
      return [...new Set(statuses)]
        .filter((status) => !documented.get(key)?.includes(status as number))
        .map((status) => `${key} answers ${status}`);
    });
    expect(undeclared).toEqual([]);
  });

  it.each(Object.keys(ROUTES))("%s", async (key) => {
    const row = ROUTES[key] as Row;
    const policy: Policy = POLICIES[row.policy];
    const [method, template] = split(key);
    const f = projectFixtures(api, {
      project: alpha.id,
      writer: alpha.token,
      euManager: tokens.euManager as string,
      mark: MARK,
    });
    const [path, body] = [await row.request(f)].flat() as [string, unknown];
    expect(path, "the row's request is one of its route").toMatch(templatePattern(template));
    const asked = path + JSON.stringify(body ?? null);
    const before = await catalogSnapshot(api.services.db);

    for (const [caller, outcome] of Object.entries(policy.who) as [Caller, Outcome][]) {
      if (outcome === ALLOWED || (outcome === OK && isWrite(key))) continue;
      if (outcome === OTHER && row.otherProject === undefined) continue;
      const expected = outcome === OK ? row.ok : outcome === OTHER ? row.otherProject : outcome;
      const [status, field] = [expected].flat() as [number, string | undefined];
      const token = tokens[caller];
      const response = await api.call(method, path, { token, body });
      const text = JSON.stringify(response.body);
      const context = `${caller} got ${response.status} ${text}`;
      expect.soft(response.status, context).toBe(status);
      if (status >= 400) {
        expect
          .soft(response.headers.get("content-type") ?? "", context)
          .toContain("application/problem+json");
        if (CODES[status]) expect.soft(response.body?.code, context).toBe(CODES[status]);
      }
      if (field)
        expect
          .soft(
            response.body?.errors?.map((e: { path: string }) => e.path),
            context,
          )
          .toContain(field);
      if (caller !== "otherWriter") continue;

      // Nothing of A's that B did not name itself: not its project, its objects, their names.
      for (const secret of [alpha.id, MARK, ...f.made].filter((s) => !asked.includes(s))) {
        expect.soft(text, `B learns ${secret}`).not.toContain(secret);
      }
      if (status === 404) {
        // Not even that the object exists: the answer is the one about an ID nothing has.
        const named = [alpha.id, ...f.made].filter((id) => path.includes(id));
        const ghosts = named.map((id) => [id, ghostOf(id)] as const);
        const ghostPath = ghosts.reduce((p, [id, ghost]) => p.replaceAll(id, ghost), path);
        const ghost = await api.call(method, ghostPath, { token, body });
        const ghostText = ghosts.reduce((t, [id, g]) => t.replaceAll(g, id), JSON.stringify(ghost.body));
        expect.soft([ghost.status, ghostText], "B's answer about an ID nothing has").toEqual([status, text]);
      }
    }
    expect(changedTables(before, await catalogSnapshot(api.services.db)), "written by refused calls").toEqual(
      [],
    );

    if (isWrite(key)) {
      const done = await api.call(method, path, { token: tokens[policy.by], body });
      expect(done.status, `${policy.by}: ${JSON.stringify(done.body)}`).toBe(row.ok);
      const changed = changedTables(before, await catalogSnapshot(api.services.db));
      if (row.recordsNothing) expect(changed).toEqual([]);
      else expect(changed, "the success is a write the snapshots see").not.toEqual([]);
    }
  });
});
