import { hash } from "node:crypto";

/** Chunks and whole images are addressed by SHA-256, written as 64 lowercase hex digits. */
export const DIGEST_BYTES = 32;

const DIGEST_PATTERN = /^[0-9a-f]{64}$/;

/** True for a well-formed digest; anything else (including "../x") is never used as a key or a path. */
export function isDigest(value: unknown): value is string {
  return typeof value === "string" && DIGEST_PATTERN.test(value);
}

export function sha256Hex(data: Uint8Array): string {
  return hash("sha256", data, "hex");
}

// Zero runs are common in disk images; their digests are computed once per length.
const zeroDigestByLength = new Map<number, string>();
let zeros = Buffer.alloc(0);

/** A buffer of `length` zero bytes, shared and read-only by convention. */
export function zeroBytes(length: number): Buffer {
  if (zeros.length < length) zeros = Buffer.alloc(Math.max(length, 1 << 20));
  return zeros.subarray(0, length);
}

export function zeroChunkDigest(length: number): string {
  let digest = zeroDigestByLength.get(length);
  if (digest === undefined) {
    digest = sha256Hex(zeroBytes(length));
    zeroDigestByLength.set(length, digest);
  }
  return digest;
}

/** memcmp against a zero buffer: exits at the first non-zero byte, so data chunks cost almost nothing. */
export function isAllZero(data: Uint8Array): boolean {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).equals(zeroBytes(data.byteLength));
}
