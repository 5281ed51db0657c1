// Schemas as resource authors write them, their cty object type, and their protocol form.

import type { CtyType } from "../cty/types.ts";
import type { CtyValue } from "../cty/values.ts";
import type { PlanModifier } from "./plan-modifiers.ts";

export interface Attribute {
  type: CtyType;
  description?: string;
  required?: boolean;
  optional?: boolean;
  computed?: boolean;
  sensitive?: boolean;
  deprecated?: boolean;
  /** Used in the plan when the configuration leaves the attribute null. Implies optional + computed. */
  default?: CtyValue;
  planModifiers?: PlanModifier[];
}

export type NestingMode = "single" | "list" | "set" | "map" | "group";

export interface Block {
  description?: string;
  attributes: { [name: string]: Attribute };
  blocks?: { [typeName: string]: NestedBlock };
}

export interface NestedBlock extends Block {
  nesting: NestingMode;
  minItems?: number;
  maxItems?: number;
  planModifiers?: PlanModifier[];
}

export interface Schema extends Block {
  /** Bump when the stored state shape changes; see ResourceDefinition.upgradeState. */
  version?: number;
}

const blockTypes = new WeakMap<Block, CtyType>();

/**
 * The block's object type, built once per block: schemas are fixed for the process, and the
 * codecs cache facts per type object, so every value of a resource shares one.
 */
export function blockType(block: Block): CtyType {
  let type = blockTypes.get(block);
  if (!type) {
    const attributes: { [name: string]: CtyType } = {};
    for (const [name, attribute] of Object.entries(block.attributes)) attributes[name] = attribute.type;
    for (const [name, nested] of Object.entries(block.blocks ?? {}))
      attributes[name] = nestedBlockType(nested);
    type = ["object", attributes];
    blockTypes.set(block, type);
  }
  return type;
}

export function nestedBlockType(nested: NestedBlock): CtyType {
  const element = blockType(nested);
  switch (nested.nesting) {
    case "single":
    case "group":
      return element;
    case "list":
      return ["list", element];
    case "set":
      return ["set", element];
    case "map":
      return ["map", element];
  }
}

const textEncoder = new TextEncoder();

function attributeToProto(name: string, attribute: Attribute) {
  const hasDefault = attribute.default !== undefined;
  return {
    name,
    type: textEncoder.encode(JSON.stringify(attribute.type)),
    description: attribute.description ?? "",
    required: attribute.required ?? false,
    optional: (attribute.optional ?? false) || hasDefault,
    computed: (attribute.computed ?? false) || hasDefault,
    sensitive: attribute.sensitive ?? false,
    deprecated: attribute.deprecated ?? false,
  };
}

const NESTING_TO_PROTO = { single: "SINGLE", list: "LIST", set: "SET", map: "MAP", group: "GROUP" } as const;

function blockToProto(block: Block, version = 0): Record<string, unknown> {
  return {
    version,
    description: block.description ?? "",
    attributes: Object.entries(block.attributes).map(([name, attribute]) =>
      attributeToProto(name, attribute),
    ),
    block_types: Object.entries(block.blocks ?? {}).map(([typeName, nested]) => ({
      type_name: typeName,
      nesting: NESTING_TO_PROTO[nested.nesting],
      min_items: nested.minItems ?? 0,
      max_items: nested.maxItems ?? 0,
      block: blockToProto(nested),
    })),
  };
}

export function schemaToProto(schema: Schema): Record<string, unknown> {
  return { version: schema.version ?? 0, block: blockToProto(schema, schema.version ?? 0) };
}

/** Catches schema mistakes when the provider is defined rather than when Terraform runs. */
export function checkSchema(where: string, block: Block): void {
  for (const [name, attribute] of Object.entries(block.attributes)) {
    const flags = [attribute.required, attribute.optional, attribute.computed].filter(Boolean).length;
    if (flags === 0 && attribute.default === undefined) {
      throw new Error(`${where}.${name}: an attribute must be required, optional or computed`);
    }
    if (attribute.required && (attribute.optional || attribute.computed || attribute.default !== undefined)) {
      throw new Error(
        `${where}.${name}: a required attribute cannot also be optional, computed or defaulted`,
      );
    }
  }
  for (const [name, nested] of Object.entries(block.blocks ?? {})) {
    if (name in block.attributes) throw new Error(`${where}.${name}: both an attribute and a block`);
    checkSchema(`${where}.${name}`, nested);
  }
}
