import { DIGEST_BYTES } from "../../common/image-format/digest.ts";
import { type ChunkRef, type Manifest, ManifestError } from "../../common/image-format/manifest.ts";

/*
 * A manifest sent as a difference from one the receiver already holds (the stale index):
 * runs of entries copied from the base manifest, and the entries that are new. A 1 GiB
 * image's manifest is ~4.5 MiB; after a 1 MiB insertion its delta is a few hundred bytes,
 * which is what lets a small change cost about what it changed on the wire.
 *
 *   "GVMD" | u32 format (1) | u64 size | 32-byte digest | u32 op count |
 *   ops: 0x00 | u32 base start | u32 count           (copy base entries)
 *        0x01 | u32 count | count x (digest | u32 length, high bit = zero run)
 */
const MAGIC = 0x47564d44; // "GVMD"
const ZERO_FLAG = 0x80000000;

export type ManifestDeltaOp = { copy: { start: number; count: number } } | { literal: ChunkRef[] };

function sameEntry(a: ChunkRef | undefined, b: ChunkRef): boolean {
  return a !== undefined && a.digest === b.digest && a.length === b.length && a.zero === b.zero;
}

/** The ops that rebuild `next` from `base`, reusing runs of base entries wherever they recur. */
export function diffManifests(base: Manifest, next: Manifest): ManifestDeltaOp[] {
  const firstIndex = new Map<string, number>();
  base.chunks.forEach((chunk, i) => {
    if (!firstIndex.has(chunk.digest)) firstIndex.set(chunk.digest, i);
  });
  const ops: ManifestDeltaOp[] = [];
  let copyEnd = -1; // base index that would continue the current copy run
  for (const entry of next.chunks) {
    const last = ops.at(-1);
    if (last && "copy" in last && sameEntry(base.chunks[copyEnd], entry)) {
      last.copy.count++;
      copyEnd++;
      continue;
    }
    const at = firstIndex.get(entry.digest);
    if (at !== undefined && sameEntry(base.chunks[at], entry)) {
      ops.push({ copy: { start: at, count: 1 } });
      copyEnd = at + 1;
      continue;
    }
    if (last && "literal" in last) last.literal.push(entry);
    else ops.push({ literal: [entry] });
    copyEnd = -1;
  }
  return ops;
}

export function encodeManifestDelta(next: Manifest, ops: readonly ManifestDeltaOp[]): Buffer {
  let bytes = 4 + 4 + 8 + DIGEST_BYTES + 4;
  for (const op of ops) bytes += "copy" in op ? 9 : 5 + op.literal.length * (DIGEST_BYTES + 4);
  const out = Buffer.allocUnsafe(bytes);
  out.writeUInt32BE(MAGIC, 0);
  out.writeUInt32BE(1, 4);
  out.writeBigUInt64BE(BigInt(next.size), 8);
  out.write(next.digest, 16, DIGEST_BYTES, "hex");
  out.writeUInt32BE(ops.length, 48);
  let at = 52;
  for (const op of ops) {
    if ("copy" in op) {
      out.writeUInt8(0, at);
      out.writeUInt32BE(op.copy.start, at + 1);
      out.writeUInt32BE(op.copy.count, at + 5);
      at += 9;
    } else {
      out.writeUInt8(1, at);
      out.writeUInt32BE(op.literal.length, at + 1);
      at += 5;
      for (const chunk of op.literal) {
        out.write(chunk.digest, at, DIGEST_BYTES, "hex");
        out.writeUInt32BE((chunk.zero ? ZERO_FLAG : 0) + chunk.length, at + DIGEST_BYTES);
        at += DIGEST_BYTES + 4;
      }
    }
  }
  return out;
}

/** Rebuilds the manifest from `base` and an encoded delta (validate the result as any manifest). */
export function applyManifestDelta(base: Manifest, data: Uint8Array): Manifest {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const fail = (message: string): never => {
    throw new ManifestError("manifest", message);
  };
  if (buf.length < 52 || buf.readUInt32BE(0) !== MAGIC || buf.readUInt32BE(4) !== 1)
    fail("is not a manifest delta");
  const size = buf.readBigUInt64BE(8);
  if (size > BigInt(Number.MAX_SAFE_INTEGER)) fail("declares an impossible size");
  const count = buf.readUInt32BE(48);
  const chunks: ChunkRef[] = [];
  let at = 52;
  for (let i = 0; i < count; i++) {
    if (at + 5 > buf.length) fail("is truncated");
    const kind = buf.readUInt8(at);
    if (kind === 0) {
      if (at + 9 > buf.length) fail("is truncated");
      const start = buf.readUInt32BE(at + 1);
      const length = buf.readUInt32BE(at + 5);
      if (start + length > base.chunks.length) fail("copies entries its base does not have");
      for (let k = start; k < start + length; k++) chunks.push(base.chunks[k] as ChunkRef);
      at += 9;
    } else if (kind === 1) {
      const literals = buf.readUInt32BE(at + 1);
      at += 5;
      if (at + literals * (DIGEST_BYTES + 4) > buf.length) fail("is truncated");
      for (let k = 0; k < literals; k++) {
        const word = buf.readUInt32BE(at + DIGEST_BYTES);
        chunks.push({
          digest: buf.toString("hex", at, at + DIGEST_BYTES),
          length: word & ~ZERO_FLAG,
          zero: (word & ZERO_FLAG) !== 0,
        });
        at += DIGEST_BYTES + 4;
      }
    } else {
      fail(`has an unknown op ${kind}`);
    }
  }
  if (at !== buf.length) fail("has trailing bytes");
  return { size: Number(size), digest: buf.toString("hex", 16, 48), chunks };
}
