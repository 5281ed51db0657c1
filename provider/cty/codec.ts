// What the msgpack and JSON codecs share: errors that name where in a value they happened,
// safe construction of objects from data, and per-type facts computed once.

import { type CtyType, describeType } from "./types.ts";
import type { CtyValue } from "./values.ts";

export class CtyCodecError extends Error {
  readonly path: (string | number)[];

  constructor(message: string, path: (string | number)[]) {
    super(path.length ? `${formatPath(path)}: ${message}` : message);
    this.path = path;
  }
}

function formatPath(path: (string | number)[]): string {
  return path
    .map((step, index) => (typeof step === "number" ? `[${step}]` : index ? `.${step}` : step))
    .join("");
}

/**
 * `path` is the codec's working stack of steps (pushed on the way down, popped on the way
 * up, so a walk allocates no path per value); the error keeps a copy.
 */
export function fail(expected: CtyType, value: unknown, path: (string | number)[]): never {
  const got = value === undefined ? "undefined" : Array.isArray(value) ? "array" : typeof value;
  throw new CtyCodecError(`expected ${describeType(expected)}, got ${got}`, [...path]);
}

/** Keys such as "__proto__" are data here, never prototypes. */
export function defineEntry(target: { [key: string]: CtyValue }, key: string, value: CtyValue) {
  // Plain assignment makes the same own, enumerable, writable property, only faster; the one
  // key it would treat otherwise is __proto__ (an accessor on Object.prototype).
  if (key !== "__proto__") target[key] = value;
  else Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
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
