import { hash } from "node:crypto";
import { createRequire } from "node:module";
import { blake3 } from "@napi-rs/blake-hash";

/**
 * Chunks and whole images are addressed by 32-byte digests, written as 64 lowercase hex
 * digits. A whole image's digest is SHA-256 (what users compare with `sha256sum`); a chunk's is
 * the hash its manifest names (`ChunkHash`).
 */
export const DIGEST_BYTES = 32;

/**
 * How a manifest's chunks are hashed. BLAKE3 for every manifest cut now: about twice SHA-256's
 * speed on one core at the chunker's sizes, and every chunk is hashed when it is cut and again
 * each time it is received. SHA-256 for the manifests cut before it, which stay readable.
 */
export type ChunkHash = "sha256" | "blake3";
export const CHUNK_HASH: ChunkHash = "blake3";

/**
 * Where the BLAKE3 binding lies, for the hashing threads' evaluated sources to load it: they
 * have no module of their own to resolve a package from.
 */
export const BLAKE3_MODULE = createRequire(import.meta.url).resolve("@napi-rs/blake-hash");

const DIGEST_PATTERN = /^[0-9a-f]{64}$/;

/** True for a well-formed digest; anything else (including "../x") is never used as a key or a path. */
export function isDigest(value: unknown): value is string {
  return typeof value === "string" && DIGEST_PATTERN.test(value);
}

export function sha256Hex(data: Uint8Array): string {
  return hash("sha256", data, "hex");
}

export function chunkDigest(data: Uint8Array, algorithm: ChunkHash): string {
  return algorithm === "blake3" ? blake3(asBuffer(data)).toString("hex") : sha256Hex(data);
}

/** The same bytes as a Buffer (a view, not a copy): what the binding's signature asks for. */
function asBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

// Zero runs are common in disk images; their digests are computed once per length.
const zeroDigests: Record<ChunkHash, Map<number, string>> = { sha256: new Map(), blake3: new Map() };
let zeros = Buffer.alloc(0);

/** A buffer of `length` zero bytes, shared and read-only by convention. */
export function zeroBytes(length: number): Buffer {
  if (zeros.length < length) zeros = Buffer.alloc(Math.max(length, 1 << 20));
  return zeros.subarray(0, length);
}

export function zeroChunkDigest(length: number, algorithm: ChunkHash): string {
  const known = zeroDigests[algorithm];
  let digest = known.get(length);
  if (digest === undefined) {
    digest = chunkDigest(zeroBytes(length), algorithm);
    known.set(length, digest);
  }
  return digest;
}

/** memcmp against a zero buffer: exits at the first non-zero byte, so data chunks cost almost nothing. */
export function isAllZero(data: Uint8Array): boolean {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).equals(zeroBytes(data.byteLength));
}
