// What the msgpack and JSON codecs share: errors that name where in a value they happened,
// and safe construction of objects from data.

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
