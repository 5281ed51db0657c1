// The document `terraform providers schema -json` prints for this provider, built directly
// from the provider's schema definitions (no terraform init, no provider process). It follows
// Terraform's jsonprovider encoding: empty strings and false flags are left out, every
// description is "plain", object keys come out sorted. A test compares it with what the real
// terraform prints for the installed provider.

import type { ProviderDefinition } from "../provider/framework/definitions.ts";
import type { Attribute, Block, NestedBlock, Schema } from "../provider/framework/schema.ts";

export interface JsonAttribute {
  type: unknown;
  description?: string;
  description_kind: "plain";
  required?: true;
  optional?: true;
  computed?: true;
  sensitive?: true;
  deprecated?: true;
}

export interface JsonBlock {
  attributes?: Record<string, JsonAttribute>;
  block_types?: Record<string, JsonBlockType>;
  description?: string;
  description_kind: "plain";
}

export interface JsonBlockType {
  nesting_mode: NestedBlock["nesting"];
  block: JsonBlock;
  min_items?: number;
  max_items?: number;
}

export interface JsonSchema {
  version: number;
  block: JsonBlock;
}

export interface ProviderSchemaDocument {
  format_version: "1.0";
  provider_schemas: Record<
    string,
    {
      provider: JsonSchema;
      resource_schemas?: Record<string, JsonSchema>;
      data_source_schemas?: Record<string, JsonSchema>;
    }
  >;
}

/** Terraform marshals cty types with Go's encoding/json, which sorts object keys. */
function sortedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortedKeys);
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((key) => [key, sortedKeys((value as Record<string, unknown>)[key])]),
    );
  }
  return value;
}

function sortedEntries<T>(record: Record<string, T>): [string, T][] {
  return Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function attributeJson(attribute: Attribute): JsonAttribute {
  // A default makes an attribute optional + computed in the protocol (framework/schema.ts).
  const hasDefault = attribute.default !== undefined;
  return {
    type: sortedKeys(attribute.type),
    ...(attribute.description ? { description: attribute.description } : {}),
    description_kind: "plain",
    ...(attribute.required ? { required: true } : {}),
    ...(attribute.optional || hasDefault ? { optional: true } : {}),
    ...(attribute.computed || hasDefault ? { computed: true } : {}),
    ...(attribute.sensitive ? { sensitive: true } : {}),
    ...(attribute.deprecated ? { deprecated: true } : {}),
  };
}

function blockJson(block: Block): JsonBlock {
  const attributes = sortedEntries(block.attributes);
  const blocks = sortedEntries(block.blocks ?? {});
  return {
    ...(attributes.length
      ? { attributes: Object.fromEntries(attributes.map(([name, a]) => [name, attributeJson(a)])) }
      : {}),
    ...(blocks.length
      ? { block_types: Object.fromEntries(blocks.map(([name, nested]) => [name, blockTypeJson(nested)])) }
      : {}),
    ...(block.description ? { description: block.description } : {}),
    description_kind: "plain",
  };
}

function blockTypeJson(nested: NestedBlock): JsonBlockType {
  return {
    nesting_mode: nested.nesting,
    block: blockJson(nested),
    ...(nested.minItems ? { min_items: nested.minItems } : {}),
    ...(nested.maxItems ? { max_items: nested.maxItems } : {}),
  };
}

function schemaJson(schema: Schema): JsonSchema {
  return { version: schema.version ?? 0, block: blockJson(schema) };
}

/**
 * `providerAddress` is the full source address terraform uses as the key, e.g.
 * "registry.terraform.io/globalvm/globalvm".
 */
export function providerSchemaDocument<ProviderData>(
  provider: ProviderDefinition<ProviderData>,
  providerAddress: string,
): ProviderSchemaDocument {
  const named = <T extends { typeName: string; schema: Schema }>(definitions: T[]) =>
    Object.fromEntries(
      [...definitions]
        .sort((a, b) => (a.typeName < b.typeName ? -1 : a.typeName > b.typeName ? 1 : 0))
        .map((d) => [d.typeName, schemaJson(d.schema)]),
    );
  return {
    format_version: "1.0",
    provider_schemas: {
      [providerAddress]: {
        provider: schemaJson(provider.schema),
        ...(provider.resources.length ? { resource_schemas: named(provider.resources) } : {}),
        ...(provider.dataSources.length ? { data_source_schemas: named(provider.dataSources) } : {}),
      },
    },
  };
}
