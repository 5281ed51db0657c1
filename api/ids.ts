import { randomBytes } from "node:crypto";
import { ID_PREFIXES, type IdKind } from "../schemas/common.ts";

// Crockford base32 (no i, l, o, u): IDs sort by creation time, so pages ordered by ID are
// ordered by age and cursors stay stable while rows are added.
const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";

function encode(value: bigint, length: number): string {
  let out = "";
  for (let i = 0; i < length; i++) {
    out = ALPHABET[Number(value & 31n)] + out;
    value >>= 5n;
  }
  return out;
}

export function newId(kind: IdKind, now = Date.now()): string {
  const random = BigInt(`0x${randomBytes(10).toString("hex")}`);
  return `${ID_PREFIXES[kind]}_${encode(BigInt(now), 10)}${encode(random, 16)}`;
}
