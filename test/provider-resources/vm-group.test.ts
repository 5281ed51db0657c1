// globalvm_vm_group in process: plan-time validation with attribute paths, and create's
// idempotent POST + operation following against a scripted control plane (the real
// orchestrator that finishes VM group operations is another issue).

import { describe, expect, it } from "vitest";
import { CtyNumber, type CtyValue, isUnknown, type ObjectValue } from "../../provider/cty/values.ts";
import { Diagnostics } from "../../provider/framework/diagnostics.ts";
import { createLogger } from "../../provider/framework/logger.ts";
import { planResourceChange } from "../../provider/framework/plan.ts";
import { createProviderData } from "../../provider/provider-data.ts";
import { parseDuration } from "../../provider/resources/values.ts";
import { vmGroupResource } from "../../provider/resources/vm-group.ts";
import { createBody, idempotencyKey } from "../../provider/resources/vm-group-config.ts";

const n = (value: number) => new CtyNumber(value);

function config(overrides: ObjectValue = {}): ObjectValue {
  return {
    id: null,
    name: "app",
    image: "img_0123456789abcdef",
    image_version: null,
    region: "us-east",
    placement: null,
    size: n(2),
    machine: { vcpus: n(1), memory_mb: n(256) },
    metadata: { ROLE: "web" },
    metadata_from: null,
    spread_hosts: false,
    distribution: null,
    wait_for_ready: true,
    timeouts: null,
    datacenter: null,
    datacenters: null,
    instances: null,
    expose: [],
    endpoints: null,
    ...overrides,
  };
}

function validate(value: ObjectValue) {
  const diagnostics = new Diagnostics();
  vmGroupResource.validateConfig?.(value, diagnostics);
  return diagnostics.items.map((d) => ({ summary: d.summary, path: d.path }));
}

describe("plan-time validation", () => {
  it("accepts a valid configuration", () => {
    expect(validate(config())).toEqual([]);
  });

  it("names the attribute of each error", () => {
    expect(validate(config({ size: n(0) }))).toEqual([{ summary: "Invalid size", path: ["size"] }]);
    expect(validate(config({ machine: { vcpus: n(0), memory_mb: n(256) } }))).toEqual([
      { summary: "Invalid vcpus", path: ["machine", "vcpus"] },
    ]);
    expect(validate(config({ region: null }))).toEqual([{ summary: "Missing placement", path: ["region"] }]);
    expect(
      validate(config({ placement: { regions: ["eu-west"], strategy: null, conditions: null } })),
    ).toEqual([{ summary: "Conflicting placement", path: ["placement"] }]);
    expect(validate(config({ timeouts: { create: "soon", update: null, delete: null } }))).toEqual([
      { summary: "Invalid duration", path: ["timeouts", "create"] },
    ]);
    expect(
      validate(
        config({ metadata_from: { PEER: { vm_group: "vmg_x", instance: n(0), attribute: "password" } } }),
      ),
    ).toEqual([
      { summary: "Invalid metadata_from attribute", path: ["metadata_from", { key: "PEER" }, "attribute"] },
    ]);
  });

  it("names the expose block and attribute of a bad exposed port", () => {
    expect(
      validate(
        config({
          expose: [
            { port: n(80), protocol: null },
            { port: n(0), protocol: null },
            { port: n(53), protocol: "udp" },
            { port: n(80), protocol: "tcp" },
          ],
        }),
      ),
    ).toEqual([
      { summary: "Invalid port", path: ["expose", 1, "port"] },
      { summary: "Invalid protocol", path: ["expose", 2, "protocol"] },
      { summary: "Port exposed twice", path: ["expose", 3, "port"] },
    ]);
  });

  it("parses durations", () => {
    expect(parseDuration("10m")).toBe(600_000);
    expect(parseDuration("1h30m")).toBe(5_400_000);
    expect(parseDuration("500ms")).toBe(500);
    expect(parseDuration("10")).toBeUndefined();
  });
});

describe("expose", () => {
  // What Terraform proposes keeps the prior state's computed values (id, network).
  const group = (expose: CtyValue) => config({ id: "vmg_1", network: "default", expose });
  const plan = (prior: ObjectValue, proposed: ObjectValue) =>
    planResourceChange({ schema: vmGroupResource.schema, prior, proposed, config: proposed }).requiresReplace;
  const web = { port: n(80), protocol: null };

  it("is sent at create with tcp when no protocol is given", () => {
    expect(createBody(config()).expose).toEqual([]);
    expect(createBody(config({ expose: [web, { port: n(443), protocol: "tcp" }] })).expose).toEqual([
      { port: 80, protocol: "tcp" },
      { port: 443, protocol: "tcp" },
    ]);
  });

  it("cannot change in place: another port replaces the group, the same one as applied does not", () => {
    const applied = group([{ port: n(80), protocol: "tcp" }]);
    expect(plan(applied, group([web]))).toEqual([]);
    expect(plan(applied, group([{ port: n(8080), protocol: null }]))).toEqual([["expose"]]);
    expect(plan(applied, group([]))).toEqual([["expose"]]);
  });

  it("a state from before expose existed (null) is no change from no expose block", () => {
    expect(plan(group(null), group([]))).toEqual([]);
  });
});

describe("spread_hosts", () => {
  const group = (spread: CtyValue) => config({ id: "vmg_1", network: "default", spread_hosts: spread });
  const plan = (prior: ObjectValue, proposed: ObjectValue) =>
    planResourceChange({ schema: vmGroupResource.schema, prior, proposed, config: proposed });

  it("is an optional bool that defaults to false", () => {
    expect(vmGroupResource.schema.attributes?.spread_hosts).toMatchObject({ type: "bool", default: false });
    expect(createBody(config()).spread_hosts).toBe(false);
    expect(createBody(config({ spread_hosts: null })).spread_hosts).toBe(false);
    expect(createBody(config({ spread_hosts: true })).spread_hosts).toBe(true);
    // Unset in the configuration: planned as the default.
    expect(plan(group(false), group(null)).planned?.spread_hosts).toBe(false);
  });

  it("changes in place, never replacing the group", () => {
    const turnedOn = plan(group(false), group(true));
    expect(turnedOn.requiresReplace).toEqual([]);
    expect(turnedOn.planned?.spread_hosts).toBe(true);
    expect(plan(group(true), group(null)).requiresReplace).toEqual([]);
  });

  it("a state from before spread_hosts existed (null) plans the default", () => {
    expect(plan(group(null), group(null)).planned?.spread_hosts).toBe(false);
  });
});

describe("distribution", () => {
  const regional = (distribution: CtyValue, more: ObjectValue = {}) =>
    config({
      id: "vmg_1",
      network: "default",
      distribution,
      datacenters: ["us-east-a", "us-east-b"],
      ...more,
    });
  // Terraform proposes the prior state's computed values; the configuration has none.
  const plan = (prior: ObjectValue, proposed: ObjectValue) =>
    planResourceChange({
      schema: vmGroupResource.schema,
      prior,
      proposed,
      config: { ...proposed, datacenters: null },
    });

  it("is sent at create only when given", () => {
    expect(createBody(config())).not.toHaveProperty("distribution");
    expect(createBody(config({ distribution: "even" })).distribution).toBe("even");
  });

  it("is even or any and needs region, each error naming it; it may go with exposed ports", () => {
    expect(validate(config({ distribution: "even" }))).toEqual([]);
    expect(validate(config({ distribution: "round-robin" }))).toEqual([
      { summary: "Invalid distribution", path: ["distribution"] },
    ]);
    expect(
      validate(
        config({
          region: null,
          distribution: "any",
          placement: { regions: ["us-east"], strategy: null, conditions: null },
        }),
      ),
    ).toEqual([{ summary: "A distribution needs a region", path: ["distribution"] }]);
    expect(validate(config({ distribution: "even", expose: [{ port: n(80), protocol: null }] }))).toEqual([]);
  });

  it("a change replaces the group; a resize keeps it in place with its datacenters known after apply", () => {
    expect(plan(regional("even"), regional("any")).requiresReplace).toEqual([["distribution"]]);
    expect(plan(regional(null), regional("even")).requiresReplace).toEqual([["distribution"]]);
    const resized = plan(regional("even"), regional("even", { size: n(6) }));
    expect(resized.requiresReplace).toEqual([]);
    expect(isUnknown(resized.planned?.datacenters)).toBe(true);
    // Nothing changed: the datacenters stay as they are.
    expect(plan(regional("even"), regional("even")).planned?.datacenters).toEqual(["us-east-a", "us-east-b"]);
  });
});

describe("datacenters in a plan", () => {
  const spanning = ["us-east-a", "us-east-b"];
  const group = (more: ObjectValue = {}) =>
    config({
      id: "vmg_1",
      network: "default",
      distribution: "even",
      datacenters: spanning,
      state: "ready",
      ...more,
    });
  // The whole PlanResourceChange: the framework's plan, then the resource's modifyPlan.
  async function plan(prior: ObjectValue, proposed: ObjectValue) {
    const result = planResourceChange({
      schema: vmGroupResource.schema,
      prior,
      proposed,
      config: { ...proposed, id: null, datacenters: null, state: null },
    });
    const planned = result.planned as ObjectValue;
    await vmGroupResource.modifyPlan?.(
      {
        config: { ...proposed, id: null, datacenters: null, state: null },
        prior,
        planned,
        requiresReplace: result.requiresReplace,
        diagnostics: new Diagnostics(),
      },
      context(fakeControlPlane({ pollsToFinish: 1 }).fetchImpl, []),
    );
    return { planned, requiresReplace: result.requiresReplace };
  }

  it("keep the prior value when nothing that moves them changes", async () => {
    const changes: ObjectValue[] = [
      { metadata: { ROLE: "db" } },
      { spread_hosts: true },
      { image_version: n(3) },
      { machine: { vcpus: n(2), memory_mb: n(512) } },
    ];
    for (const change of changes) {
      const { planned, requiresReplace } = await plan(group(), group(change));
      expect(requiresReplace).toEqual([]);
      expect(planned.datacenters, JSON.stringify(Object.keys(change))).toEqual(spanning);
    }
    // A group in one datacenter stays there when it is resized.
    const single = group({ distribution: null, datacenter: "us-east-a", datacenters: ["us-east-a"] });
    const resized = await plan(single, { ...single, size: n(5) });
    expect(resized.planned.datacenters).toEqual(["us-east-a"]);
  });

  it("are unknown when a regional group is resized, either way", async () => {
    for (const size of [6, 1]) {
      const { planned, requiresReplace } = await plan(group(), group({ size: n(size) }));
      expect(requiresReplace).toEqual([]);
      expect(isUnknown(planned.datacenters)).toBe(true);
    }
  });

  it("are unknown when the group is replaced (another distribution, region or image)", async () => {
    const changes: ObjectValue[] = [{ distribution: "any" }, { distribution: null }, { region: "eu-west" }];
    for (const change of changes) {
      const { planned, requiresReplace } = await plan(group(), group(change));
      expect(requiresReplace.length).toBeGreaterThan(0);
      expect(isUnknown(planned.datacenters)).toBe(true);
    }
  });

  it("are unknown while the apply waits for an operation left running, or the group has not settled", async () => {
    // An earlier apply timed out during a resize: the next one waits for it, nothing else changes.
    const reattached = await plan(group({ state: "updating" }), group({ state: "updating" }));
    expect(reattached.planned.state).toBe("ready");
    expect(isUnknown(reattached.planned.datacenters)).toBe(true);
    // Not placed yet (a create that failed before placing it), and something changes.
    const failedEarly = group({ state: "failed", datacenters: [] });
    const unplaced = await plan(failedEarly, { ...failedEarly, metadata: { ROLE: "db" } });
    expect(isUnknown(unplaced.planned.datacenters)).toBe(true);
    // A plan that changes nothing leaves them as they are, whatever the group's state.
    const failed = group({ state: "failed", datacenters: ["us-east-a"] });
    expect((await plan(failed, failed)).planned.datacenters).toEqual(["us-east-a"]);
  });
});

describe("the idempotency key", () => {
  it("is a function of the planned configuration", () => {
    const a = idempotencyKey(createBody(config()));
    expect(idempotencyKey(createBody(config()))).toBe(a);
    expect(idempotencyKey(createBody(config({ size: n(3) })))).not.toBe(a);
    expect(idempotencyKey(createBody(config()), 2)).toBe(`${a}.2`);
    expect(a).toMatch(/^[A-Za-z0-9_.:-]{1,255}$/);
  });
});

/** The ID of the n-th group the scripted control plane creates. */
const groupId = (n: number) => `vmg_${String(n).padStart(26, "0")}`;

/** A scripted control plane: POST /v1/vm-groups keyed by Idempotency-Key, operations that advance per poll. */
function fakeControlPlane(options: { pollsToFinish: number; fail?: boolean }) {
  const operations = new Map<string, { polls: number; groupId: string }>();
  const keys = new Map<string, string>();
  const requests: string[] = [];
  const operation = (id: string) => {
    const op = operations.get(id);
    if (!op) throw new Error(`no operation ${id}`);
    const done = op.polls >= options.pollsToFinish;
    return {
      id,
      project_id: "prj_1",
      kind: "create-vm-group",
      target: { type: "vm-group", id: op.groupId },
      state: done ? (options.fail ? "failed" : "succeeded") : "running",
      done,
      progress: {
        step: "transferring-image",
        bytes_done: op.polls * 1_048_576,
        bytes_total: 8_388_608,
        children: [],
      },
      error: done && options.fail ? { code: "no_capacity", message: "us-east-a is full" } : null,
      result: null,
      created_at: "2025-01-01T00:00:00Z",
      updated_at: "2025-01-01T00:00:00Z",
    };
  };
  const json = (status: number, body: unknown) =>
    new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
  const fetchImpl = async (input: string | URL | Request, init?: RequestInit) => {
    const request = new Request(input, init);
    const url = new URL(request.url);
    requests.push(`${request.method} ${url.pathname}${url.search}`);
    if (request.method === "POST" && url.pathname === "/v1/vm-groups") {
      const key = request.headers.get("idempotency-key") ?? "";
      let id = keys.get(key);
      if (!id) {
        id = `op_${keys.size + 1}`;
        keys.set(key, id);
        operations.set(id, { polls: 0, groupId: groupId(keys.size) });
      }
      return json(202, operation(id));
    }
    const opMatch = /^\/v1\/operations\/(op_\d+)$/.exec(url.pathname);
    if (opMatch) {
      await new Promise((resolve) => setTimeout(resolve, 2)); // a (very short) long-poll
      const op = operations.get(opMatch[1] as string);
      if (op) op.polls++;
      return json(200, operation(opMatch[1] as string));
    }
    const instances = (groupId: string) =>
      [0, 1].map((i) => ({
        id: `ins_${i}`,
        vm_group_id: groupId,
        datacenter: "us-east-a",
        // The first on a host agent, the second run by the manager itself.
        host: i === 0 ? "host-1" : null,
        address: `10.0.0.${i + 2}`,
        state: "ready",
      }));
    const group = (id: string) => ({
      id,
      project_id: "prj_1",
      ...createBody(config({ expose: [{ port: n(80), protocol: null }] })),
      endpoints: [
        {
          port: 80,
          protocol: "tcp",
          address: "127.0.0.1:30001",
          url: "tcp://127.0.0.1:30001",
          datacenter: "us-east-a",
        },
      ],
      image_version: null,
      region: "us-east",
      placement: null,
      datacenter: "us-east-a",
      datacenters: ["us-east-a"],
      distribution: null,
      state: "ready",
      created_at: "2025-01-01T00:00:00Z",
      updated_at: "2025-01-01T00:00:00Z",
    });
    // A refresh lists the project's groups with their instances (or those of some IDs).
    const listed = (filter: string) =>
      url.searchParams.has(filter)
        ? url.searchParams.getAll(filter)
        : [...operations.values()].map((op) => op.groupId);
    if (url.pathname === "/v1/vm-groups" && request.method === "GET") {
      return json(200, { items: listed("id").map(group), next_page_token: null });
    }
    if (url.pathname === "/v1/instances") {
      return json(200, { items: listed("vm_group").flatMap(instances), next_page_token: null });
    }
    const groupMatch = /^\/v1\/vm-groups\/(vmg_\w+)(\/instances)?$/.exec(url.pathname);
    if (groupMatch) {
      const id = groupMatch[1] as string;
      return json(200, groupMatch[2] ? { items: instances(id), next_page_token: null } : group(id));
    }
    return json(404, { title: "Not Found", status: 404, code: "not_found", detail: url.pathname });
  };
  return { fetchImpl: fetchImpl as typeof fetch, requests, keys };
}

function context(fetchImpl: typeof fetch, lines: string[], signal = new AbortController().signal) {
  return {
    signal,
    log: createLogger("provider.globalvm", (line) => lines.push(line)),
    providerData: createProviderData("http://control-plane.test", "token-0123456789abcdef", {
      fetch: fetchImpl,
    }),
  };
}

describe("create", () => {
  it("posts with the derived key, follows the operation logging step/bytes/rate, and returns the group", async () => {
    const fake = fakeControlPlane({ pollsToFinish: 3 });
    const lines: string[] = [];
    const state = await vmGroupResource.create(
      { plan: config(), config: config() },
      context(fake.fetchImpl, lines),
    );
    expect(state).toMatchObject({
      id: groupId(1),
      datacenter: "us-east-a",
      expose: [{ port: n(80), protocol: "tcp" }],
      endpoints: [
        {
          port: n(80),
          protocol: "tcp",
          address: "127.0.0.1:30001",
          url: "tcp://127.0.0.1:30001",
          datacenter: "us-east-a",
        },
      ],
    });
    // An import reads the same state from the ID alone.
    const imported = await vmGroupResource.read(
      { state: { id: groupId(1) } },
      context(fake.fetchImpl, lines),
    );
    expect(imported).toMatchObject({ expose: state.expose, endpoints: state.endpoints });
    expect(state.instances).toEqual([
      { id: "ins_0", datacenter: "us-east-a", host: "host-1", address: "10.0.0.2", state: "ready" },
      { id: "ins_1", datacenter: "us-east-a", host: null, address: "10.0.0.3", state: "ready" },
    ]);
    expect(state.datacenters).toEqual(["us-east-a"]);
    expect([...fake.keys.keys()]).toEqual([idempotencyKey(createBody(config()))]);
    expect(fake.requests.filter((r) => r.startsWith("GET /v1/operations/op_1?wait=30s"))).toHaveLength(3);
    const progress = lines.map((line) => JSON.parse(line)).filter((l) => l.operation === "op_1" && l.step);
    expect(progress.length).toBe(3);
    expect(progress[0]).toMatchObject({
      "@level": "info",
      step: "transferring-image",
      bytes_done: 1_048_576,
    });
    expect(progress[0].rate_bytes_per_second).toBeGreaterThan(0);
  });

  it("times out leaving the operation running, and the next apply re-attaches to it", async () => {
    const fake = fakeControlPlane({ pollsToFinish: 4 });
    const plan = config({ timeouts: { create: "1ms", update: null, delete: null } });
    await expect(vmGroupResource.create({ plan, config: plan }, context(fake.fetchImpl, []))).rejects.toThrow(
      /Timed out waiting for creating VM group app/,
    );
    const retry = config({ timeouts: { create: "1ms", update: null, delete: null } });
    // Same plan → same key → same operation (op_1), not a second one.
    await vmGroupResource.create({ plan: retry, config: retry }, context(fake.fetchImpl, [])).catch(() => {});
    expect(fake.keys.size).toBe(1);
    const longer = config({ timeouts: { create: "1m", update: null, delete: null } });
    // A changed timeout is part of the plan but not of the request: still the same operation.
    const state = await vmGroupResource.create({ plan: longer, config: longer }, context(fake.fetchImpl, []));
    expect(state.id).toBe(groupId(1));
    expect(fake.keys.size).toBe(1);
  });

  it("reports a failed operation with its error", async () => {
    const fake = fakeControlPlane({ pollsToFinish: 1, fail: true });
    await expect(
      vmGroupResource.create({ plan: config(), config: config() }, context(fake.fetchImpl, [])),
    ).rejects.toMatchObject({
      message: "creating VM group app failed",
      detail: expect.stringContaining("us-east-a is full"),
    });
  });

  it("stops when Terraform asks the provider to stop", async () => {
    const fake = fakeControlPlane({ pollsToFinish: 1_000_000 });
    const controller = new AbortController();
    const creating = vmGroupResource.create(
      { plan: config(), config: config() },
      context(fake.fetchImpl, [], controller.signal),
    );
    setTimeout(() => controller.abort(new Error("Terraform asked the provider to stop")), 50);
    await expect(creating).rejects.toThrow(/stop/);
  });
});
