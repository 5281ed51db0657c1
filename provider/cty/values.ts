// JS representation of cty values, as the framework hands them to resources:
//   null → null, unknown → Unknown, string → string, bool → boolean,
//   number → CtyNumber (exact decimal), list/set/tuple → array, map/object → plain object,
//   a value of type "dynamic" → Dynamic (its concrete type travels with it).

import { canonicalDecimal } from "./decimal.ts";
import { attributeNames, type CtyType } from "./types.ts";

export interface Refinement {
  /** false: the value is known not to be null. */
  nullable?: boolean;
  stringPrefix?: string;
  numberLowerBound?: { value: string; inclusive: boolean };
  numberUpperBound?: { value: string; inclusive: boolean };
  lengthLowerBound?: number;
  lengthUpperBound?: number;
}

/** A value Terraform does not know yet (shown as "(known after apply)"). */
export class Unknown {
  readonly refinement: Refinement | undefined;
  /** The msgpack payload of a refined unknown, kept so it can be echoed back byte for byte. */
  readonly refinementPayload: Uint8Array | undefined;

  constructor(refinement?: Refinement, refinementPayload?: Uint8Array) {
    this.refinement = refinement;
    this.refinementPayload = refinementPayload;
  }
}

export const unknown = new Unknown();

export function isUnknown(value: unknown): value is Unknown {
  return value instanceof Unknown;
}

/** Integer text already in canonical form (most numbers decoded from Terraform): kept as is. */
const CANONICAL_INTEGER = /^-?[1-9]\d*$|^0$/;

export class CtyNumber {
  /** Canonical decimal text: exact, no exponent. */
  readonly text: string;

  constructor(value: number | bigint | string) {
    if (typeof value === "number") {
      if (!Number.isFinite(value)) throw new Error(`cty numbers cannot be ${value}`);
      // A JS number stands for the decimal it prints as (0.1 means 0.1), which is what a
      // resource author writing `new CtyNumber(0.1)` means.
      this.text = Number.isSafeInteger(value) ? String(value) : canonicalDecimal(String(value));
    } else if (typeof value === "string" && CANONICAL_INTEGER.test(value)) this.text = value;
    else this.text = canonicalDecimal(String(value));
  }

  toNumber(): number {
    return Number(this.text);
  }

  toBigInt(): bigint {
    if (this.text.includes(".")) throw new Error(`${this.text} is not an integer`);
    return BigInt(this.text);
  }

  isSafeInteger(): boolean {
    return !this.text.includes(".") && Number.isSafeInteger(Number(this.text));
  }

  toString(): string {
    return this.text;
  }

  toJSON(): string {
    return this.text;
  }
}

export const num = (value: number | bigint | string): CtyNumber => new CtyNumber(value);

export class Dynamic {
  readonly type: CtyType;
  readonly value: CtyValue;

  constructor(type: CtyType, value: CtyValue) {
    this.type = type;
    this.value = value;
  }
}

export type CtyValue =
  | null
  | Unknown
  | string
  | boolean
  | CtyNumber
  | Dynamic
  | CtyValue[]
  | { [key: string]: CtyValue };

export type ObjectValue = { [attribute: string]: CtyValue };

export function containsUnknown(value: CtyValue): boolean {
  if (value instanceof Unknown) return true;
  if (value instanceof Dynamic) return containsUnknown(value.value);
  if (Array.isArray(value)) return value.some(containsUnknown);
  if (value !== null && typeof value === "object" && !(value instanceof CtyNumber)) {
    return Object.values(value).some(containsUnknown);
  }
  return false;
}

/** Semantic equality under a type: sets ignore order, numbers compare by value. Unknowns equal only unknowns. */
export function valuesEqual(type: CtyType, a: CtyValue, b: CtyValue): boolean {
  if (a === null || b === null) return a === b;
  if (a instanceof Unknown || b instanceof Unknown) return a instanceof Unknown && b instanceof Unknown;
  if (typeof type === "string") {
    if (type === "number") return a instanceof CtyNumber && b instanceof CtyNumber && a.text === b.text;
    if (type === "dynamic") {
      return (
        a instanceof Dynamic &&
        b instanceof Dynamic &&
        JSON.stringify(a.type) === JSON.stringify(b.type) &&
        valuesEqual(a.type, a.value, b.value)
      );
    }
    return a === b;
  }
  const kind = type[0];
  if (kind === "list" || kind === "set" || kind === "tuple") {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    if (type[0] === "list")
      return a.every((element, index) => valuesEqual(type[1], element, b[index] ?? null));
    if (type[0] === "tuple") {
      return a.every((element, index) => valuesEqual(type[1][index] ?? "dynamic", element, b[index] ?? null));
    }
    const elementType = type[1];
    const unmatched = [...b];
    for (const element of a) {
      const at = unmatched.findIndex((candidate) => valuesEqual(elementType, element, candidate));
      if (at < 0) return false;
      unmatched.splice(at, 1);
    }
    return true;
  }
  if (!isPlainObject(a) || !isPlainObject(b)) return false;
  if (type[0] === "map") {
    const keys = Object.keys(a);
    if (keys.length !== Object.keys(b).length) return false;
    return keys.every((key) => key in b && valuesEqual(type[1], a[key] ?? null, b[key] ?? null));
  }
  const attributes = type[1] as { [attribute: string]: CtyType };
  return attributeNames(attributes).every((name) =>
    valuesEqual(attributes[name] as CtyType, a[name] ?? null, b[name] ?? null),
  );
}

export function isPlainObject(value: CtyValue | undefined): value is { [key: string]: CtyValue } {
  return (
    value !== null &&
    typeof value === "object" &&
    !Array.isArray(value) &&
    !(value instanceof Unknown) &&
    !(value instanceof CtyNumber) &&
    !(value instanceof Dynamic)
  );
}
