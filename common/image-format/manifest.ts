import { DIGEST_BYTES, isDigest, zeroChunkDigest } from "./digest.ts";

/**
 * Largest chunk a manifest may reference. Above the chunker's maximum (64 KiB) so that
 * other chunking parameters remain possible, small enough to hold a chunk in memory.
 */
export const MAX_CHUNK_LENGTH = 256 * 1024;

export interface ChunkRef {
  digest: string;
  length: number;
  /** A run of zeros: never stored nor sent, written as a hole when the image is assembled. */
  zero: boolean;
}

/** One image version: its whole-image digest and size, and its ordered chunks. */
export interface Manifest {
  size: number;
  digest: string;
  chunks: ChunkRef[];
}

export class ManifestError extends Error {
  readonly code = "INVALID_MANIFEST";
  readonly field: string;
  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = "ManifestError";
    this.field = field;
  }
}

export interface ManifestExpectations {
  size?: number;
  digest?: string;
}

/**
 * Throws a ManifestError naming the first field that is wrong. `wellFormedDigests`: the
 * manifest's digests were written as hex from 32 bytes (decoded from a binary manifest or
 * delta, or computed here) and cannot be malformed; they are not matched against the digest
 * pattern again, which for 1 GiB (131,000 chunks) took 40 ms of a pull's start.
 */
export function validateManifest(
  manifest: Manifest,
  expected: ManifestExpectations = {},
  { wellFormedDigests = false }: { wellFormedDigests?: boolean } = {},
): void {
  if (!Number.isSafeInteger(manifest.size) || manifest.size < 0) {
    throw new ManifestError("size", "must be a non-negative integer");
  }
  if (!isDigest(manifest.digest)) throw new ManifestError("digest", "must be 64 lowercase hex digits");
  if (expected.size !== undefined && manifest.size !== expected.size) {
    throw new ManifestError("size", `declares ${manifest.size} bytes, expected ${expected.size}`);
  }
  if (expected.digest !== undefined && manifest.digest !== expected.digest) {
    throw new ManifestError("digest", `declares ${manifest.digest}, expected ${expected.digest}`);
  }
  let total = 0;
  for (let i = 0; i < manifest.chunks.length; i++) {
    const chunk = manifest.chunks[i] as ChunkRef;
    if (!wellFormedDigests && !isDigest(chunk.digest))
      throw new ManifestError(`chunks[${i}].digest`, "must be 64 lowercase hex digits");
    if (!Number.isSafeInteger(chunk.length) || chunk.length < 1 || chunk.length > MAX_CHUNK_LENGTH) {
      throw new ManifestError(`chunks[${i}].length`, `must be between 1 and ${MAX_CHUNK_LENGTH} bytes`);
    }
    if (chunk.zero && chunk.digest !== zeroChunkDigest(chunk.length)) {
      throw new ManifestError(`chunks[${i}].digest`, "is marked as zeros but is not the digest of zeros");
    }
    total += chunk.length;
  }
  if (total !== manifest.size) {
    throw new ManifestError("chunks", `lengths add up to ${total} bytes, not the declared ${manifest.size}`);
  }
}

/** Distinct non-zero digests a manifest references (what garbage collection must keep). */
export function referencedDigests(manifest: Manifest, into: Set<string> = new Set()): Set<string> {
  for (const chunk of manifest.chunks) if (!chunk.zero) into.add(chunk.digest);
  return into;
}

export function chunkLengthsOf(manifest: Manifest): Map<string, number> {
  const lengths = new Map<string, number>();
  for (const chunk of manifest.chunks) lengths.set(chunk.digest, chunk.length);
  return lengths;
}

/*
 * Binary form, used on the wire and on disk (a 1 GiB image has ~65,536 chunks: 2.3 MiB in
 * this form, about twice that as JSON):
 *   "GVMF" | u32 format version (1) | u64 size | 32-byte digest | u32 chunk count |
 *   count x (32-byte digest | u32 length, high bit set for a zero run)
 */
const MAGIC = 0x47564d46; // "GVMF"
const HEADER_BYTES = 4 + 4 + 8 + DIGEST_BYTES + 4;
export const MANIFEST_HEADER_BYTES = HEADER_BYTES;
const ENTRY_BYTES = DIGEST_BYTES + 4;
const ZERO_FLAG = 0x80000000;

export function encodeManifest(manifest: Manifest): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES + manifest.chunks.length * ENTRY_BYTES);
  out.writeUInt32BE(MAGIC, 0);
  out.writeUInt32BE(1, 4);
  out.writeBigUInt64BE(BigInt(manifest.size), 8);
  out.write(manifest.digest, 16, DIGEST_BYTES, "hex");
  out.writeUInt32BE(manifest.chunks.length, 48);
  let at = HEADER_BYTES;
  for (const chunk of manifest.chunks) {
    out.write(chunk.digest, at, DIGEST_BYTES, "hex");
    out.writeUInt32BE((chunk.zero ? ZERO_FLAG : 0) + chunk.length, at + DIGEST_BYTES);
    at += ENTRY_BYTES;
  }
  return out;
}

/** Bytes of a binary manifest listing `chunks` chunks. */
export function manifestBytes(chunks: number): number {
  return HEADER_BYTES + chunks * ENTRY_BYTES;
}

/** The image size and chunk count a manifest's header announces (its first MANIFEST_HEADER_BYTES). */
export function readManifestHeader(header: Buffer): { size: number; chunkCount: number } {
  if (header.length < HEADER_BYTES || header.readUInt32BE(0) !== MAGIC) {
    throw new ManifestError("manifest", "is not a globalvm manifest");
  }
  const size = header.readBigUInt64BE(8);
  return {
    size: size > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(size),
    chunkCount: header.readUInt32BE(48),
  };
}

/** Parses the binary form; structural problems throw ManifestError (then call validateManifest). */
export function decodeManifest(data: Uint8Array): Manifest {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buf.length < HEADER_BYTES || buf.readUInt32BE(0) !== MAGIC) {
    throw new ManifestError("manifest", "is not a globalvm manifest");
  }
  if (buf.readUInt32BE(4) !== 1) throw new ManifestError("manifest", "has an unknown format version");
  const size = buf.readBigUInt64BE(8);
  if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw new ManifestError("size", "is too large");
  const count = buf.readUInt32BE(48);
  if (buf.length !== HEADER_BYTES + count * ENTRY_BYTES) {
    throw new ManifestError(
      "chunks",
      `the manifest holds ${buf.length} bytes, ${count} chunks need more or less`,
    );
  }
  const chunks: ChunkRef[] = new Array(count);
  let at = HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    const word = buf.readUInt32BE(at + DIGEST_BYTES);
    chunks[i] = {
      digest: buf.toString("hex", at, at + DIGEST_BYTES),
      length: word & ~ZERO_FLAG,
      zero: (word & ZERO_FLAG) !== 0,
    };
    at += ENTRY_BYTES;
  }
  return { size: Number(size), digest: buf.toString("hex", 16, 48), chunks };
}

/** Concatenated 32-byte digests: how lists of wanted or missing chunks travel. */
export function encodeDigestList(digests: readonly string[]): Buffer {
  const out = Buffer.allocUnsafe(digests.length * DIGEST_BYTES);
  digests.forEach((digest, i) => {
    out.write(digest, i * DIGEST_BYTES, DIGEST_BYTES, "hex");
  });
  return out;
}

export function decodeDigestList(data: Uint8Array): string[] {
  if (data.byteLength % DIGEST_BYTES !== 0) {
    throw new ManifestError("digests", `a digest list is a multiple of ${DIGEST_BYTES} bytes`);
  }
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const digests: string[] = [];
  for (let at = 0; at < buf.length; at += DIGEST_BYTES)
    digests.push(buf.toString("hex", at, at + DIGEST_BYTES));
  return digests;
}
