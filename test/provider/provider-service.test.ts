// The tfplugin6.Provider handlers in process: decoding with schemas, dispatch to
// create/update/delete, state completion and diagnostics, without gRPC or terraform.

import { describe, expect, it } from "vitest";
import { decodeMsgpack, encodeMsgpack } from "../../provider/cty/msgpack.ts";
import { CtyNumber, type CtyValue, type ObjectValue, unknown } from "../../provider/cty/values.ts";
import { defineProvider, defineResource } from "../../provider/framework/definitions.ts";
import { DiagnosticError } from "../../provider/framework/diagnostics.ts";
import { createLogger } from "../../provider/framework/logger.ts";
import { createProviderService } from "../../provider/framework/provider-service.ts";
import { blockType } from "../../provider/framework/schema.ts";

const calls: string[] = [];
let createResult: ObjectValue = {};
let readResult: ObjectValue | null = null;

const thing = defineResource<{ token: string }>({
  typeName: "globalvm_thing",
  schema: {
    version: 1,
    attributes: {
      id: { type: "string", computed: true },
      name: { type: "string", required: true },
      size: { type: "number", optional: true },
    },
  },
  async create({ plan }, { providerData }) {
    calls.push(`create ${String(plan.name)} with ${providerData.token}`);
    return createResult;
  },
  async read({ state }) {
    calls.push(`read ${String(state.id)}`);
    return readResult;
  },
  async update({ plan }) {
    calls.push(`update ${String(plan.name)}`);
    throw new DiagnosticError("Size not allowed", { path: ["size"], detail: "too big" });
  },
  async delete({ prior }) {
    calls.push(`delete ${String(prior.id)}`);
  },
  upgradeState({ version, json }) {
    const old = JSON.parse(json) as { id: string; title: string };
    return { id: old.id, name: `${old.title} (from v${version})` };
  },
});

const provider = defineProvider({
  typeName: "globalvm",
  schema: { attributes: { token: { type: "string", optional: true, sensitive: true } } },
  configure: ({ config }) => ({ token: String(config.token) }),
  resources: [thing],
  dataSources: [],
});

const type = blockType(thing.schema);
const dv = (value: CtyValue) => ({ msgpack: encodeMsgpack(type, value) });
const state = (response: Record<string, unknown>, field: string) =>
  decodeMsgpack(type, (response[field] as { msgpack: Uint8Array }).msgpack);
const call = { signal: new AbortController().signal };
const silent = createLogger("test", () => {});

async function configuredService() {
  const service = createProviderService(provider, silent);
  const providerType = blockType(provider.schema);
  await service.ConfigureProvider(
    { terraform_version: "1.11.4", config: { msgpack: encodeMsgpack(providerType, { token: "t0k" }) } },
    call,
  );
  return service;
}

describe("ApplyResourceChange", () => {
  it("creates with the provider data and fills attributes create left out from the plan", async () => {
    const service = await configuredService();
    calls.length = 0;
    createResult = { id: "th-1" };
    const planned = { id: unknown, name: "a", size: new CtyNumber(2) };
    const response = await service.ApplyResourceChange(
      {
        type_name: "globalvm_thing",
        prior_state: dv(null),
        planned_state: dv(planned),
        config: dv({ ...planned, id: null }),
      },
      call,
    );
    expect(calls).toEqual(["create a with t0k"]);
    expect(response.diagnostics).toEqual([]);
    expect(state(response, "new_state")).toEqual({ id: "th-1", name: "a", size: new CtyNumber(2) });
  });

  it("reports a computed attribute left unknown after apply, with its path", async () => {
    const service = await configuredService();
    createResult = {};
    const planned = { id: unknown, name: "a", size: null };
    const response = await service.ApplyResourceChange(
      { type_name: "globalvm_thing", prior_state: dv(null), planned_state: dv(planned), config: dv(planned) },
      call,
    );
    expect(response.diagnostics).toMatchObject([
      {
        severity: "ERROR",
        summary: "Provider returned an unknown value",
        attribute: { steps: [{ attribute_name: "id" }] },
      },
    ]);
  });

  it("keeps the prior state and reports the attribute when an update fails", async () => {
    const service = await configuredService();
    const prior = { id: "th-1", name: "a", size: new CtyNumber(2) };
    const response = await service.ApplyResourceChange(
      {
        type_name: "globalvm_thing",
        prior_state: dv(prior),
        planned_state: dv({ ...prior, size: new CtyNumber(99) }),
        config: dv(prior),
      },
      call,
    );
    expect(state(response, "new_state")).toEqual(prior);
    expect(response.diagnostics).toMatchObject([
      {
        severity: "ERROR",
        summary: "Size not allowed",
        detail: "too big",
        attribute: { steps: [{ attribute_name: "size" }] },
      },
    ]);
  });

  it("deletes when the planned state is null", async () => {
    const service = await configuredService();
    calls.length = 0;
    const response = await service.ApplyResourceChange(
      {
        type_name: "globalvm_thing",
        prior_state: dv({ id: "th-9", name: "z", size: null }),
        planned_state: dv(null),
      },
      call,
    );
    expect(calls).toEqual(["delete th-9"]);
    expect(state(response, "new_state")).toBeNull();
  });
});

describe("ReadResource", () => {
  it("returns a null new_state when the object is gone, so terraform plans a create", async () => {
    const service = await configuredService();
    readResult = null;
    const response = await service.ReadResource(
      { type_name: "globalvm_thing", current_state: dv({ id: "th-1", name: "a", size: null }) },
      call,
    );
    expect(state(response, "new_state")).toBeNull();
  });
});

describe("UpgradeResourceState", () => {
  it("decodes raw JSON state of the current version exactly", async () => {
    const service = await configuredService();
    const response = await service.UpgradeResourceState(
      {
        type_name: "globalvm_thing",
        version: 1,
        raw_state: { json: new TextEncoder().encode('{"id":"x","name":"n","size":123456789012345678901}') },
      },
      call,
    );
    expect(state(response, "upgraded_state")).toEqual({
      id: "x",
      name: "n",
      size: new CtyNumber("123456789012345678901"),
    });
  });

  it("hands older versions to the resource's upgradeState", async () => {
    const service = await configuredService();
    const response = await service.UpgradeResourceState(
      {
        type_name: "globalvm_thing",
        version: 0,
        raw_state: { json: new TextEncoder().encode('{"id":"x","title":"old"}') },
      },
      call,
    );
    expect(state(response, "upgraded_state")).toEqual({ id: "x", name: "old (from v0)", size: null });
  });
});

describe("StopProvider", () => {
  it("aborts the signal of calls in flight and of calls racing in after it", async () => {
    let seen: AbortSignal | undefined;
    const slow = defineResource({
      ...thing,
      typeName: "globalvm_slow",
      create: (_request, context) =>
        new Promise<ObjectValue>((_resolve, reject) => {
          seen = context.signal;
          if (context.signal.aborted) reject(new Error("stopped"));
          context.signal.addEventListener("abort", () => reject(new Error("stopped")));
        }),
    });
    const service = createProviderService({ ...provider, resources: [slow] }, silent);
    const planned = { id: unknown, name: "a", size: null };
    const applying = service.ApplyResourceChange(
      { type_name: "globalvm_slow", prior_state: dv(null), planned_state: dv(planned), config: dv(planned) },
      call,
    );
    await new Promise((resolve) => setTimeout(resolve, 10));
    await service.StopProvider({}, call);
    const response = await applying;
    expect(seen?.aborted).toBe(true);
    expect(response.diagnostics).toMatchObject([
      { severity: "ERROR", summary: "Operation cancelled", detail: "stopped" },
    ]);
    expect(state(response, "new_state")).toBeNull();

    const late = await service.ApplyResourceChange(
      { type_name: "globalvm_slow", prior_state: dv(null), planned_state: dv(planned), config: dv(planned) },
      call,
    );
    expect(late.diagnostics).toMatchObject([{ summary: "Operation cancelled" }]);
  });
});
