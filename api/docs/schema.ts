// JSON Schemas of the OpenAPI document as readable HTML: a type label (with links to the named
// components), the constraints, and the fields of objects, nested as deep as the schema goes.
import { anchor, codeJson, escapeHtml, prose } from "./html.ts";

export type Schema = { [key: string]: unknown };

const REF_PREFIX = "#/components/schemas/";
/** Inline schemas nest this deep at most; below, a field shows its type only. */
const MAX_DEPTH = 8;

/** An object's fields (merged over `allOf`), and the components it extends. */
export interface ObjectView {
  fields: Map<string, { schema: unknown; required: boolean }>;
  bases: string[];
}

export class Schemas {
  readonly named: Record<string, Schema>;
  constructor(named: Record<string, Schema>) {
    this.named = named;
  }

  /** The component a `$ref` names, if it is one of this document's schemas. */
  refName(schema: Schema): string | undefined {
    const ref = schema.$ref;
    return typeof ref === "string" && ref.startsWith(REF_PREFIX) ? ref.slice(REF_PREFIX.length) : undefined;
  }

  resolve(schema: Schema): Schema {
    const name = this.refName(schema);
    return (name !== undefined && this.named[name]) || schema;
  }

  /** A link to a component's entry in the schemas section. */
  link(name: string): string {
    return `<a class="ref" href="#${anchor("schema", name)}">${escapeHtml(name)}</a>`;
  }

  /** The type of a schema as a short HTML label: `string`, `array of Image`, `Capacity | null`. */
  typeLabel(schema: unknown): string {
    if (!isSchema(schema)) return "any";
    if (typeof schema.$ref === "string") {
      const name = this.refName(schema);
      return name === undefined ? escapeHtml(schema.$ref) : this.link(name);
    }
    if ("const" in schema) return codeJson(schema.const);
    if (Array.isArray(schema.allOf)) {
      const parts = schema.allOf.filter((part) => !isNullMarker(part)).map((part) => this.typeLabel(part));
      const nullable = schema.allOf.some(isNullMarker);
      return `${parts.join(" &amp; ") || "object"}${nullable ? " | null" : ""}`;
    }
    const union = schema.anyOf ?? schema.oneOf;
    if (Array.isArray(union)) return union.map((part) => this.typeLabel(part)).join(" | ");
    const types = Array.isArray(schema.type) ? schema.type : [schema.type ?? (schema.properties && "object")];
    const labels = types.map((type) => {
      if (type === "array") return `array of ${this.typeLabel(schema.items)}`;
      if (type === "object") {
        const extra = schema.additionalProperties;
        if (!schema.properties && isSchema(extra)) return `map of string to ${this.typeLabel(extra)}`;
        return "object";
      }
      if (typeof type !== "string") return "any";
      const format =
        typeof schema.format === "string" && type !== "null" ? ` (${escapeHtml(schema.format)})` : "";
      return `${escapeHtml(type)}${format}`;
    });
    return labels.join(" | ");
  }

  /** Enum values, default, bounds, pattern and example of a schema, as one line (or ""). */
  constraints(schema: unknown): string {
    if (!isSchema(schema)) return "";
    const items: string[] = [];
    if (Array.isArray(schema.enum)) items.push(`one of ${schema.enum.map((v) => codeJson(v)).join(", ")}`);
    if ("default" in schema) items.push(`default ${codeJson(schema.default)}`);
    const bound = (label: string, min: unknown, max: unknown) => {
      if (min !== undefined && max !== undefined)
        items.push(`${label} ${escapeHtml(min)}–${escapeHtml(max)}`);
      else if (min !== undefined) items.push(`${label} ≥ ${escapeHtml(min)}`);
      else if (max !== undefined) items.push(`${label} ≤ ${escapeHtml(max)}`);
    };
    bound("value", schema.minimum, schema.maximum);
    bound("length", schema.minLength, schema.maxLength);
    bound("items", schema.minItems, schema.maxItems);
    if (schema.exclusiveMinimum !== undefined)
      items.push(`value &gt; ${escapeHtml(schema.exclusiveMinimum)}`);
    if (schema.exclusiveMaximum !== undefined)
      items.push(`value &lt; ${escapeHtml(schema.exclusiveMaximum)}`);
    if (typeof schema.pattern === "string") items.push(`pattern <code>${escapeHtml(schema.pattern)}</code>`);
    if (schema.example !== undefined) items.push(`example ${codeJson(schema.example)}`);
    if (schema.deprecated === true) items.push("deprecated");
    if (schema.readOnly === true) items.push("read-only");
    return items.length === 0 ? "" : `<div class="meta">${items.join(" · ")}</div>`;
  }

  /**
   * The fields of an object schema, merged over `allOf` (following its `$ref`s), with the
   * components it extends. With `expand`, a `$ref` at the top is followed too (a request body).
   */
  objectView(schema: Schema, expand: boolean, seen = new Set<string>()): ObjectView | undefined {
    const view: ObjectView = { fields: new Map(), bases: [] };
    const name = this.refName(schema);
    if (name !== undefined) {
      if (!expand || seen.has(name) || !this.named[name]) return undefined;
      seen.add(name);
      return this.objectView(this.named[name], true, seen);
    }
    if (Array.isArray(schema.allOf)) {
      const parts = schema.allOf.filter(isSchema);
      // A nullable reference (`allOf: [$ref, null marker]`) stays a link unless expanded.
      if (!expand && !parts.some((part) => isSchema(part.properties))) return undefined;
      for (const part of parts) {
        const partName = this.refName(part);
        const inner = this.objectView(part, true, seen);
        if (!inner) continue;
        if (partName !== undefined) view.bases.push(partName);
        view.bases.push(...inner.bases);
        for (const [field, value] of inner.fields) view.fields.set(field, value);
      }
      return view.fields.size > 0 || view.bases.length > 0 ? view : undefined;
    }
    if (!isSchema(schema.properties)) return undefined;
    const required = new Set(Array.isArray(schema.required) ? schema.required : []);
    for (const [field, value] of Object.entries(schema.properties)) {
      view.fields.set(field, { schema: value, required: required.has(field) });
    }
    return view;
  }

  /** A field list of an object's properties (or "" when the schema is no inline object). */
  fields(schema: unknown, depth: number, expand = false): string {
    if (!isSchema(schema) || depth > MAX_DEPTH) return "";
    const view = this.objectView(schema, expand);
    if (!view) return this.nested(schema, depth);
    const rows = [...view.fields].map(([name, field]) =>
      this.field(name, field.schema, field.required, depth),
    );
    const bases =
      view.bases.length === 0
        ? ""
        : `<p class="bases">Includes the fields of ${view.bases.map((base) => this.link(base)).join(", ")}.</p>`;
    const extra = isSchema(schema.additionalProperties)
      ? `<p class="bases">Other keys: ${this.typeLabel(schema.additionalProperties)}.</p>`
      : "";
    return `${bases}${rows.length ? `<ul class="fields">${rows.join("")}</ul>` : ""}${extra}`;
  }

  /** What an array's items, a map's values or a union's members add below a type label. */
  private nested(schema: Schema, depth: number): string {
    if (schema.items !== undefined) return this.fields(schema.items, depth + 1);
    if (isSchema(schema.additionalProperties) && !schema.properties)
      return this.fields(schema.additionalProperties, depth + 1);
    const union = schema.anyOf ?? schema.oneOf;
    if (Array.isArray(union)) return union.map((part) => this.fields(part, depth + 1)).join("");
    return "";
  }

  private field(name: string, schema: unknown, required: boolean, depth: number): string {
    const description = isSchema(schema) ? prose(schema.description) : "";
    return (
      `<li><code class="name">${escapeHtml(name)}</code> <span class="type">${this.typeLabel(schema)}</span>` +
      (required ? ' <span class="req">required</span>' : "") +
      `${description}${this.constraints(schema)}${this.fields(schema, depth + 1)}</li>`
    );
  }
}

export function isSchema(value: unknown): value is Schema {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** `{ type: ["object", "null"] }` beside a `$ref` in `allOf`: how a nullable reference is written. */
function isNullMarker(part: unknown): boolean {
  return (
    isSchema(part) &&
    Array.isArray(part.type) &&
    part.type.includes("null") &&
    part.properties === undefined &&
    part.$ref === undefined
  );
}
