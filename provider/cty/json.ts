// cty's JSON encoding, used by Terraform for stored state (UpgradeResourceState gets the
// raw JSON). Numbers are read from their source text so that values beyond 2^53 and
// decimals stay exact.

import { defineEntry } from "./codec.ts";
import { type CtyType, typeFromJson } from "./types.ts";
import { CtyNumber, type CtyValue, Dynamic } from "./values.ts";

type Json = null | boolean | string | CtyNumber | Json[] | { [key: string]: Json };

function parseExact(text: string): Json {
  return JSON.parse(text, (_key, value, context?: { source?: string }) => {
    if (typeof value === "number") {
      // Node ≥ 21 passes the source text; without it, fall back to the parsed double.
      return new CtyNumber(context?.source ?? String(value));
    }
    return value;
  });
}

function fromJson(type: CtyType, json: Json | undefined, path: string): CtyValue {
  if (json === null || json === undefined) return null;
  const mismatch = () =>
    new Error(`${path || "state"}: JSON value does not match type ${JSON.stringify(type)}`);
  if (typeof type === "string") {
    switch (type) {
      case "string":
        if (typeof json !== "string") throw mismatch();
        return json;
      case "bool":
        if (typeof json !== "boolean") throw mismatch();
        return json;
      case "number":
        if (json instanceof CtyNumber) return json;
        if (typeof json === "string") return new CtyNumber(json);
        throw mismatch();
      case "dynamic": {
        if (typeof json !== "object" || Array.isArray(json) || json instanceof CtyNumber) throw mismatch();
        const concrete = typeFromJson(toPlain(json.type ?? null));
        return new Dynamic(concrete, fromJson(concrete, json.value, path));
      }
    }
  }
  switch (type[0]) {
    case "list":
    case "set":
      if (!Array.isArray(json)) throw mismatch();
      return json.map((element, index) => fromJson(type[1], element, `${path}[${index}]`));
    case "tuple":
      if (!Array.isArray(json)) throw mismatch();
      return json.map((element, index) =>
        fromJson(type[1][index] ?? "dynamic", element, `${path}[${index}]`),
      );
    default: {
      if (typeof json !== "object" || Array.isArray(json) || json instanceof CtyNumber) throw mismatch();
      const out: { [key: string]: CtyValue } = {};
      if (type[0] === "map") {
        for (const [key, element] of Object.entries(json)) {
          defineEntry(out, key, fromJson(type[1], element, `${path}["${key}"]`));
        }
      } else {
        // Attributes missing from older state become null: the schema grew.
        for (const [name, attributeType] of Object.entries(type[1])) {
          defineEntry(out, name, fromJson(attributeType, json[name], path ? `${path}.${name}` : name));
        }
      }
      return out;
    }
  }
}

function toPlain(json: Json): unknown {
  if (json instanceof CtyNumber) return json.toNumber();
  if (Array.isArray(json)) return json.map(toPlain);
  if (json && typeof json === "object") {
    return Object.fromEntries(Object.entries(json).map(([key, value]) => [key, toPlain(value)]));
  }
  return json;
}

export function decodeJson(type: CtyType, text: string | Uint8Array): CtyValue {
  const source = typeof text === "string" ? text : new TextDecoder().decode(text);
  return fromJson(type, parseExact(source), "");
}
