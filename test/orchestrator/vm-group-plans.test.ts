import { describe, expect, it } from "vitest";
import {
  changesReferenceableValues,
  type ReferencedInstance,
  resolveReferences,
} from "../../api/orchestrator/dependencies.ts";
import { instancesToReplace, missingOrdinals } from "../../api/orchestrator/vm-groups.ts";
import { parseReferencedAttribute } from "../../schemas/vm-group-references.ts";

describe("missingOrdinals", () => {
  it("lists the ordinals below size that have no instance", () => {
    expect(missingOrdinals(3, [])).toEqual([0, 1, 2]);
    expect(missingOrdinals(3, [0, 2])).toEqual([1]);
    expect(missingOrdinals(1, [0, 1, 2])).toEqual([]);
    expect(missingOrdinals(0, [])).toEqual([]);
  });
});

describe("instancesToReplace", () => {
  const row = (ordinal: number, imageVersion: number | null, retiring = false) => ({
    ordinal,
    imageVersion,
    retiring,
  });
  it("picks instances on another version, in ordinal order, never a retiring one", () => {
    expect(instancesToReplace([row(2, 1), row(0, 1), row(1, 2), row(3, 1, true)], 2)).toEqual([
      row(0, 1),
      row(2, 1),
    ]);
  });
  it("leaves instances whose version is not known yet alone", () => {
    expect(instancesToReplace([row(0, null)], 2)).toEqual([]);
  });
});

describe("parseReferencedAttribute", () => {
  it("knows the instance attributes and guest attributes, and nothing else", () => {
    expect(parseReferencedAttribute("address")).toEqual({ kind: "instance", name: "address" });
    expect(parseReferencedAttribute("guest-attributes/app/endpoint")).toEqual({
      kind: "guest-attribute",
      path: "app/endpoint",
    });
    for (const bad of [
      "adress",
      "guest-attributes/app",
      "guest-attributes/a/b/c",
      "guest-attributes//x",
      "",
    ]) {
      expect(parseReferencedAttribute(bad), bad).toBeNull();
    }
  });
});

describe("resolveReferences", () => {
  const instance = (over: Partial<ReferencedInstance>): ReferencedInstance => ({
    id: "ins_old",
    ordinal: 0,
    address: null,
    datacenter: "eu-west-a",
    guestAttributes: {},
    retiring: false,
    ...over,
  });
  it("resolves what exists and leaves out what does not yet", () => {
    const groups = new Map([
      ["vmg_db", { groupName: "db", rows: [instance({ guestAttributes: { "app/endpoint": "db:5432" } })] }],
    ]);
    expect(
      resolveReferences(
        {
          endpoint: { vm_group: "vmg_db", instance: 0, attribute: "guest-attributes/app/endpoint" },
          name: { vm_group: "vmg_db", instance: 0, attribute: "name" },
          address: { vm_group: "vmg_db", instance: 0, attribute: "address" },
          second: { vm_group: "vmg_db", instance: 1, attribute: "id" },
          other: { vm_group: "vmg_none", instance: 0, attribute: "id" },
        },
        groups,
      ),
    ).toEqual({ endpoint: "db:5432", name: "db-0" });
  });
  it("names the replacement while an ordinal is being replaced", () => {
    const groups = new Map([
      [
        "vmg_db",
        {
          groupName: "db",
          rows: [instance({ id: "ins_old", retiring: true }), instance({ id: "ins_new" })],
        },
      ],
    ]);
    expect(resolveReferences({ id: { vm_group: "vmg_db", instance: 0, attribute: "id" } }, groups)).toEqual({
      id: "ins_new",
    });
  });
});

describe("changesReferenceableValues", () => {
  const before = { address: null, guestAttributes: { "globalvm/ready": "true" } };
  it("is true for a new address or a changed guest attribute only", () => {
    expect(changesReferenceableValues(before, {})).toBe(false);
    expect(changesReferenceableValues(before, { guest_attributes: { "globalvm/ready": "true" } })).toBe(
      false,
    );
    expect(changesReferenceableValues(before, { address: null })).toBe(false);
    expect(changesReferenceableValues(before, { address: "10.0.0.2" })).toBe(true);
    expect(
      changesReferenceableValues(before, {
        guest_attributes: { "globalvm/ready": "true", "app/endpoint": "x" },
      }),
    ).toBe(true);
    expect(changesReferenceableValues(before, { guest_attributes: {} })).toBe(true);
  });
});
