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

let lastTime = 0n;
let lastRandom = 0n;

/**
 * Monotonic within a process: IDs made in the same millisecond (the instances of one group,
 * say) still sort in the order they were made, by incrementing the random part.
 */
export function newId(kind: IdKind, now = Date.now()): string {
  let time = BigInt(now);
  let random: bigint;
  if (time <= lastTime) {
    time = lastTime;
    random = lastRandom + 1n;
  } else {
    random = BigInt(`0x${randomBytes(10).toString("hex")}`) >> 1n; // room to increment
  }
  lastTime = time;
  lastRandom = random;
  return `${ID_PREFIXES[kind]}_${encode(time, 10)}${encode(random, 16)}`;
}
