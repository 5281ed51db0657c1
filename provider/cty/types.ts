// cty types in their JSON form, which is also how the plugin protocol spells attribute
// types in a schema: "string", ["list","number"], ["object",{"a":"bool"}].

export type CtyType =
  | "string"
  | "number"
  | "bool"
  | "dynamic"
  | readonly ["list", CtyType]
  | readonly ["set", CtyType]
  | readonly ["map", CtyType]
  | readonly ["object", { readonly [attribute: string]: CtyType }]
  | readonly ["tuple", readonly CtyType[]];

export const listOf = (element: CtyType): CtyType => ["list", element];
export const setOf = (element: CtyType): CtyType => ["set", element];
export const mapOf = (element: CtyType): CtyType => ["map", element];
export const objectOf = (attributes: { [attribute: string]: CtyType }): CtyType => ["object", attributes];
export const tupleOf = (elements: CtyType[]): CtyType => ["tuple", elements];

export function typeToJson(type: CtyType): string {
  return JSON.stringify(type);
}

export function typeFromJson(json: unknown): CtyType {
  if (json === "string" || json === "number" || json === "bool" || json === "dynamic") return json;
  if (Array.isArray(json)) {
    const [kind, inner] = json as [unknown, unknown];
    if (kind === "list" || kind === "set" || kind === "map") return [kind, typeFromJson(inner)];
    if (kind === "tuple" && Array.isArray(inner)) return ["tuple", inner.map(typeFromJson)];
    if (kind === "object" && inner && typeof inner === "object") {
      return [
        "object",
        Object.fromEntries(Object.entries(inner).map(([name, type]) => [name, typeFromJson(type)])),
      ];
    }
  }
  throw new Error(`not a cty type: ${JSON.stringify(json)}`);
}

export function describeType(type: CtyType): string {
  if (typeof type === "string") return type;
  if (type[0] === "object") return "object";
  if (type[0] === "tuple") return "tuple";
  return `${type[0]} of ${describeType(type[1])}`;
}

type Attributes = { readonly [attribute: string]: CtyType };
const names = new WeakMap<Attributes, readonly string[]>();
const sortedNames = new WeakMap<Attributes, readonly string[]>();

// An object type's attribute names, computed once per type: a schema's types live as long as
// the process and every value of the resource goes through them.

/** In the type's own order (the order of a decoded object's keys). */
export function attributeNames(attributes: Attributes): readonly string[] {
  let list = names.get(attributes);
  if (!list) {
    list = Object.keys(attributes);
    names.set(attributes, list);
  }
  return list;
}

/** Sorted by code unit, the order cty's msgpack writes them in. */
export function sortedAttributeNames(attributes: Attributes): readonly string[] {
  let list = sortedNames.get(attributes);
  if (!list) {
    list = [...attributeNames(attributes)].sort();
    sortedNames.set(attributes, list);
  }
  return list;
}
