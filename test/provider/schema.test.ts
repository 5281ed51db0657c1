import { describe, expect, it } from "vitest";
import { blockType, checkSchema, type Schema, schemaToProto } from "../../provider/framework/schema.ts";

const schema: Schema = {
  version: 2,
  description: "A VM group.",
  attributes: {
    id: { type: "string", computed: true },
    name: { type: "string", required: true, description: "Group name." },
    token: { type: "string", optional: true, sensitive: true },
    wait_for_ready: { type: "bool", default: true },
    metadata: { type: ["map", "string"], optional: true },
  },
  blocks: {
    machine: { nesting: "single", attributes: { vcpus: { type: "number", required: true } } },
    placement: {
      nesting: "list",
      maxItems: 1,
      attributes: { regions: { type: ["set", "string"], required: true } },
    },
    replica: { nesting: "set", attributes: { region: { type: "string", computed: true } } },
    disks: { nesting: "map", attributes: { size: { type: "number", required: true } } },
    timeouts: { nesting: "group", attributes: { create: { type: "string", optional: true } } },
  },
};

describe("schemas", () => {
  it("give the cty object type of a block, nested blocks by nesting mode", () => {
    expect(blockType(schema)).toEqual([
      "object",
      {
        id: "string",
        name: "string",
        token: "string",
        wait_for_ready: "bool",
        metadata: ["map", "string"],
        machine: ["object", { vcpus: "number" }],
        placement: ["list", ["object", { regions: ["set", "string"] }]],
        replica: ["set", ["object", { region: "string" }]],
        disks: ["map", ["object", { size: "number" }]],
        timeouts: ["object", { create: "string" }],
      },
    ]);
  });

  it("become protocol schemas: JSON types, defaults as optional+computed, nesting modes", () => {
    const proto = schemaToProto(schema) as { version: number; block: Record<string, unknown> };
    expect(proto.version).toBe(2);
    const attributes = proto.block.attributes as Record<string, unknown>[];
    const byName = Object.fromEntries(attributes.map((attribute) => [attribute.name, attribute]));
    expect(new TextDecoder().decode(byName.metadata?.type as Uint8Array)).toBe('["map","string"]');
    expect(byName.wait_for_ready).toMatchObject({ optional: true, computed: true, required: false });
    expect(byName.token).toMatchObject({ sensitive: true });
    expect(byName.name).toMatchObject({ required: true, description: "Group name." });
    const blocks = proto.block.block_types as { type_name: string; nesting: string; max_items: number }[];
    expect(blocks.map((block) => [block.type_name, block.nesting, block.max_items])).toEqual([
      ["machine", "SINGLE", 0],
      ["placement", "LIST", 1],
      ["replica", "SET", 0],
      ["disks", "MAP", 0],
      ["timeouts", "GROUP", 0],
    ]);
  });

  it("are checked when the provider is defined", () => {
    expect(() => checkSchema("r", schema)).not.toThrow();
    expect(() => checkSchema("r", { attributes: { a: { type: "string" } } })).toThrow(
      /r\.a: .*required, optional or computed/,
    );
    expect(() =>
      checkSchema("r", { attributes: { a: { type: "string", required: true, computed: true } } }),
    ).toThrow(/cannot also be/);
    expect(() =>
      checkSchema("r", {
        attributes: {},
        blocks: {
          b: { nesting: "list", attributes: { x: { type: "string", required: true, default: "d" } } },
        },
      }),
    ).toThrow(/r\.b\.x/);
  });
});
