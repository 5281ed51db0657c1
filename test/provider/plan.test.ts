import { describe, expect, it } from "vitest";
import { CtyNumber, type CtyValue, type ObjectValue, Unknown, unknown } from "../../provider/cty/values.ts";
import { completeObject, findUnknown, planResourceChange } from "../../provider/framework/plan.ts";
import {
  requiresReplace,
  requiresReplaceIf,
  useStateForUnknown,
} from "../../provider/framework/plan-modifiers.ts";
import type { Schema } from "../../provider/framework/schema.ts";

const schema: Schema = {
  attributes: {
    id: { type: "string", computed: true, planModifiers: [useStateForUnknown()] },
    name: { type: "string", required: true, planModifiers: [requiresReplace()] },
    size: { type: "number", optional: true },
    status: { type: "string", computed: true },
    region: { type: "string", optional: true, computed: true },
    wait: { type: "bool", default: true },
  },
  blocks: {
    machine: {
      nesting: "single",
      attributes: {
        vcpus: { type: "number", required: true, planModifiers: [requiresReplace()] },
        assigned: { type: "string", computed: true },
      },
    },
    instance: {
      nesting: "list",
      attributes: { label: { type: "string", optional: true }, address: { type: "string", computed: true } },
    },
  },
};

const n = (value: number) => new CtyNumber(value);

function config(overrides: ObjectValue = {}): ObjectValue {
  return completeObject(schema, {
    name: "web",
    size: n(2),
    machine: { vcpus: n(2), assigned: null },
    ...overrides,
  });
}

/** What Terraform proposes: config, with prior values for computed attributes the config leaves null. */
function proposed(configValue: ObjectValue, prior: ObjectValue | null): ObjectValue {
  const result: ObjectValue = { ...configValue };
  for (const [name, attribute] of Object.entries(schema.attributes)) {
    if (attribute.computed || attribute.default !== undefined) {
      if (result[name] === null && prior) result[name] = prior[name] ?? null;
    }
  }
  if (prior && result.machine && prior.machine) {
    result.machine = {
      ...(result.machine as ObjectValue),
      assigned: (prior.machine as ObjectValue).assigned ?? null,
    };
  }
  return result;
}

const created: ObjectValue = {
  id: "vmg-1",
  name: "web",
  size: n(2),
  status: "running",
  region: "eu-west",
  wait: true,
  machine: { vcpus: n(2), assigned: "host-a" },
  instance: [],
};

describe("planResourceChange", () => {
  it("create: computed attributes become unknown, defaults fill in, nothing requires replace", () => {
    const cfg = config();
    const { planned, requiresReplace: replace } = planResourceChange({
      schema,
      prior: null,
      proposed: proposed(cfg, null),
      config: cfg,
    });
    expect(planned).toMatchObject({
      id: unknown,
      name: "web",
      status: unknown,
      region: unknown,
      wait: true,
      machine: { vcpus: n(2), assigned: unknown },
    });
    expect(replace).toEqual([]);
  });

  it("no change: the plan equals the prior state, with no unknowns", () => {
    const cfg = config();
    const { planned, requiresReplace: replace } = planResourceChange({
      schema,
      prior: created,
      proposed: proposed(cfg, created),
      config: cfg,
    });
    expect(planned).toEqual(created);
    expect(findUnknown(planned)).toBeUndefined();
    expect(replace).toEqual([]);
  });

  it("in-place change: computed attributes unknown except where state is kept for unknown", () => {
    const cfg = config({ size: n(3) });
    const { planned, requiresReplace: replace } = planResourceChange({
      schema,
      prior: created,
      proposed: proposed(cfg, created),
      config: cfg,
    });
    expect(planned?.id).toBe("vmg-1");
    expect(planned?.status).toBeInstanceOf(Unknown);
    expect(planned?.size).toEqual(n(3));
    expect(replace).toEqual([]);
  });

  it("a requires-replace attribute that changes is reported by path, nested ones too", () => {
    const cfg = config({ name: "api", machine: { vcpus: n(4), assigned: null } });
    const { requiresReplace: replace } = planResourceChange({
      schema,
      prior: created,
      proposed: proposed(cfg, created),
      config: cfg,
    });
    expect(replace).toEqual([["name"], ["machine", "vcpus"]]);
  });

  it("an optional+computed attribute set in config is kept, and one left null becomes unknown on change", () => {
    const cfg = config({ size: n(5), region: "us-east" });
    const { planned } = planResourceChange({
      schema,
      prior: created,
      proposed: proposed(cfg, created),
      config: cfg,
    });
    expect(planned?.region).toBe("us-east");
    const cfg2 = config({ size: n(5) });
    const second = planResourceChange({
      schema,
      prior: created,
      proposed: proposed(cfg2, created),
      config: cfg2,
    });
    expect(second.planned?.region).toBeInstanceOf(Unknown);
  });

  it("marks computed attributes in list block elements unknown", () => {
    const cfg = config({ instance: [{ label: "a", address: null }] });
    const { planned } = planResourceChange({ schema, prior: null, proposed: cfg, config: cfg });
    expect(planned?.instance).toEqual([{ label: "a", address: unknown }]);
  });

  it("destroy: a null proposal plans null", () => {
    expect(planResourceChange({ schema, prior: created, proposed: null, config: null })).toEqual({
      planned: null,
      requiresReplace: [],
    });
  });

  it("does not mutate the proposed value", () => {
    const cfg = config();
    const proposal = proposed(cfg, null);
    const copy = structuredClone(proposal);
    planResourceChange({ schema, prior: null, proposed: proposal, config: cfg });
    expect(proposal).toEqual(copy);
  });
});

describe("plan modifiers", () => {
  const request = (state: CtyValue, plan: CtyValue, created = false) => ({
    path: ["x"],
    type: "string" as const,
    config: plan,
    state,
    plan,
    resourceIsBeingCreated: created,
  });

  it("requiresReplace ignores creates and unchanged values", () => {
    expect(requiresReplace().modify(request(null, "a", true))).toEqual({});
    expect(requiresReplace().modify(request("a", "a"))).toEqual({});
    expect(requiresReplace().modify(request("a", "b"))).toEqual({ requiresReplace: true });
  });

  it("requiresReplaceIf consults its condition", () => {
    const growOnly = requiresReplaceIf((r) => String(r.plan) < String(r.state), "shrinking replaces");
    expect(growOnly.modify(request("b", "c"))).toEqual({});
    expect(growOnly.modify(request("b", "a"))).toEqual({ requiresReplace: true });
  });

  it("useStateForUnknown keeps the prior value only for an unknown plan", () => {
    expect(useStateForUnknown().modify({ ...request("old", unknown), config: null })).toEqual({
      plan: "old",
    });
    expect(useStateForUnknown().modify(request(null, unknown))).toEqual({});
    expect(useStateForUnknown().modify(request("old", "new"))).toEqual({});
  });
});
