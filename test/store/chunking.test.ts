import { appendFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chunkFile } from "../../common/image-format/chunk-file.ts";
import {
  type ChunkCut,
  chunkLengths,
  chunkWindow,
  cutChunks,
  DEFAULT_CHUNKING,
  findChunkEnd,
  gearTable,
  MIN_ZERO_RUN,
  masksFor,
  validateChunkingParameters,
  ZERO_CHUNK_LENGTH,
} from "../../common/image-format/chunking.ts";
import { sha256Hex, zeroChunkDigest } from "../../common/image-format/digest.ts";
import { FileHasher } from "../../common/image-format/file-hasher.ts";
import type { Manifest } from "../../common/image-format/manifest.ts";
import { seededBytes, temporaryDir } from "../support/transfer.ts";

const { minLength, averageLength, maxLength } = DEFAULT_CHUNKING;
/** What the default chunking cuts from seededBytes(4 MiB, 11), computed before the loop was unrolled. */
const PINNED_LENGTHS_DIGEST = "23f4c4fc25701abcafa27961522b554c0dfe4ce252c1b935561e53aa9eb5823a";

function digestsOf(data: Buffer): string[] {
  const out: string[] = [];
  let at = 0;
  for (const length of chunkLengths(data)) {
    out.push(sha256Hex(data.subarray(at, at + length)));
    at += length;
  }
  return out;
}

describe("content-defined chunking", () => {
  const data = seededBytes(4 << 20, 11);

  it("cuts chunks between the minimum and maximum lengths that add up to the input", () => {
    const lengths = chunkLengths(data);
    expect(lengths.reduce((a, b) => a + b, 0)).toBe(data.length);
    for (const length of lengths.slice(0, -1)) {
      expect(length).toBeGreaterThan(minLength);
      expect(length).toBeLessThanOrEqual(maxLength);
    }
  });

  it("averages close to the configured average on random data", () => {
    const lengths = chunkLengths(data);
    const mean = data.length / lengths.length;
    expect(mean).toBeGreaterThan(averageLength * 0.75);
    expect(mean).toBeLessThan(averageLength * 1.5);
  });

  it("is deterministic", () => {
    expect(chunkLengths(data)).toEqual(chunkLengths(Buffer.from(data)));
  });

  it("keeps the chunks around an insertion: only the chunks near it change", () => {
    const inserted = Buffer.concat([data.subarray(0, 2 << 20), seededBytes(1000, 5), data.subarray(2 << 20)]);
    const before = new Set(digestsOf(data));
    const after = digestsOf(inserted);
    const changed = after.filter((digest) => !before.has(digest)).length;
    expect(changed).toBeGreaterThan(0);
    expect(changed).toBeLessThanOrEqual(3);
  });

  it("never cuts zeros by content: the gear hash of a zero run matches neither mask", () => {
    const masks = masksFor(DEFAULT_CHUNKING);
    const fixedPoint = -(gearTable()[0] as number) | 0; // h = 2h + g  =>  h = -g
    expect(fixedPoint & masks.small).not.toBe(0);
    expect(fixedPoint & masks.large).not.toBe(0);
  });

  it("cuts a zero run out as zero chunks with boundaries at both of its ends", () => {
    const image = seededBytes(2 << 20, 12);
    image.fill(0, 300 * 4096, 300 * 4096 + ZERO_CHUNK_LENGTH * 2 + 5 * 4096);
    const cuts = cutChunks(image);
    const zeros = cuts.filter((cut) => cut.zero);
    expect(zeros.map((cut) => [cut.start, cut.end - cut.start])).toEqual([
      [300 * 4096, ZERO_CHUNK_LENGTH],
      [300 * 4096 + ZERO_CHUNK_LENGTH, ZERO_CHUNK_LENGTH],
      [300 * 4096 + 2 * ZERO_CHUNK_LENGTH, 5 * 4096],
    ]);
    // Short zero stretches and unaligned ones stay data.
    const short = seededBytes(1 << 20, 13);
    short.fill(0, 8192, 8192 + MIN_ZERO_RUN - 1);
    expect(cutChunks(short).some((cut) => cut.zero)).toBe(false);
  });

  it("keeps a write inside a hole from shifting the chunks after it", () => {
    const before = seededBytes(4 << 20, 14);
    before.fill(0, 1 << 20, 3 << 20);
    const after = Buffer.from(before);
    seededBytes(4096, 15).copy(after, (1 << 20) + 40 * 4096);
    const old = new Set(digestsOf(before));
    const changed = cutChunks(after).filter(
      (cut) => !cut.zero && !old.has(sha256Hex(after.subarray(cut.start, cut.end))),
    );
    expect(changed.map((cut) => cut.end - cut.start)).toEqual([4096]);
  });

  it("cuts the same chunks whatever the read windows are", () => {
    const image = seededBytes(3 << 20, 16);
    image.fill(0, 500_000, 1_700_000);
    image.fill(0, 2_000_000, 2_030_000);
    const expected = cutChunks(image);
    const masks = masksFor(DEFAULT_CHUNKING);
    for (const windowBytes of [300_000, 1 << 20, 777_777]) {
      const cuts: ChunkCut[] = [];
      const window = Buffer.alloc(windowBytes);
      let filled = 0;
      let start = 0;
      let offset = 0;
      for (;;) {
        window.copy(window, 0, start, filled);
        filled -= start;
        start = 0;
        const read = image.copy(
          window,
          filled,
          offset,
          Math.min(image.length, offset + windowBytes - filled),
        );
        filled += read;
        offset += read;
        const final = offset >= image.length;
        const base = offset - filled;
        start = chunkWindow(window, start, filled, final, base, DEFAULT_CHUNKING, masks, (cut) =>
          cuts.push({ start: cut.start + base, end: cut.end + base, zero: cut.zero }),
        );
        if (final) break;
      }
      expect(cuts).toEqual(expected);
    }
  });

  it("cuts where FastCDC's one-byte-at-a-time definition cuts, whatever the start, end and parameters", () => {
    // The definition, as plainly as it can be written: the chunker's loop is unrolled for
    // speed, and a cut anywhere else would silently lose deduplication against every chunk
    // already stored.
    const definition = (bytes: Uint8Array, start: number, end: number, params: typeof DEFAULT_CHUNKING) => {
      const masks = masksFor(params);
      const gear = gearTable();
      if (end - start <= params.minLength) return end;
      let h = 0;
      for (let i = start + params.minLength; i < Math.min(end, start + params.maxLength); i++) {
        h = ((h << 1) + (gear[bytes[i] as number] as number)) | 0;
        const mask = i < start + params.averageLength ? masks.small : masks.large;
        if ((h & mask) === 0) return i + 1;
      }
      return Math.min(end, start + params.maxLength);
    };
    const small = { minLength: 64, averageLength: 256, maxLength: 1027 };
    for (const params of [DEFAULT_CHUNKING, small]) {
      const masks = masksFor(params);
      for (let start = 0; start < 300_000; start += 997) {
        for (const end of [start + params.minLength + 5, start + params.averageLength + 3, data.length]) {
          expect(findChunkEnd(data, start, end, true, params, masks)).toBe(
            definition(data, start, end, params),
          );
        }
      }
    }
    // And what it cuts is pinned: the lengths of these 4 MiB, in order.
    expect(sha256Hex(Buffer.from(Int32Array.from(chunkLengths(data)).buffer))).toBe(PINNED_LENGTHS_DIGEST);
  });

  it("asks for more data rather than cutting early when the input is not final", () => {
    const masks = masksFor(DEFAULT_CHUNKING);
    expect(findChunkEnd(data, 0, minLength, false, DEFAULT_CHUNKING, masks)).toBe(-1);
    expect(findChunkEnd(data, 0, minLength, true, DEFAULT_CHUNKING, masks)).toBe(minLength);
  });

  it("rejects inconsistent parameters", () => {
    expect(() =>
      validateChunkingParameters({ minLength: 8192, averageLength: 4096, maxLength: 65536 }),
    ).toThrow();
    expect(() =>
      validateChunkingParameters({ minLength: 1024, averageLength: 5000, maxLength: 65536 }),
    ).toThrow();
    expect(() => validateChunkingParameters(DEFAULT_CHUNKING)).not.toThrow();
  });
});

/** `manifest` is data's: its digest, its chunks as the in-memory chunker cuts them, each one's digest. */
function expectManifestOf(manifest: Manifest, data: Buffer): void {
  expect(manifest.digest).toBe(sha256Hex(data));
  expect(manifest.chunks.map((chunk) => chunk.length)).toEqual(chunkLengths(data));
  let at = 0;
  for (const chunk of manifest.chunks) {
    const bytes = data.subarray(at, at + chunk.length);
    expect(chunk.digest).toBe(chunk.zero ? zeroChunkDigest(chunk.length) : sha256Hex(bytes));
    at += chunk.length;
  }
}

describe("chunkFile", () => {
  let dir: Awaited<ReturnType<typeof temporaryDir>>;
  beforeAll(async () => {
    dir = await temporaryDir("chunk-file");
  });
  afterAll(async () => {
    await dir.remove();
  });

  it("cuts a file exactly as the in-memory chunker does across its read windows, and marks zero runs", async () => {
    // Larger than the 8 MiB read window, so boundaries across windows are exercised.
    const data = seededBytes(10 << 20, 3);
    data.fill(0, 3 << 20, 5 << 20);
    const path = join(dir.path, "image.raw");
    await writeFile(path, data);
    const manifest = await chunkFile(path);
    expect(manifest.size).toBe(data.length);
    expect(manifest.digest).toBe(sha256Hex(data));
    expect(manifest.chunks.map((chunk) => chunk.length)).toEqual(chunkLengths(data));
    let at = 0;
    for (const chunk of manifest.chunks) {
      const bytes = data.subarray(at, at + chunk.length);
      expect(chunk.digest).toBe(sha256Hex(bytes));
      expect(chunk.zero).toBe(bytes.every((b) => b === 0));
      at += chunk.length;
    }
    const zeroChunks = manifest.chunks.filter((chunk) => chunk.zero);
    expect(zeroChunks.length).toBe(8); // 2 MiB of zeros in 256 KiB zero chunks
    expect(zeroChunks.every((chunk) => chunk.digest === zeroChunkDigest(chunk.length))).toBe(true);
  });

  it("hashes a large file's chunks and whole on a worker thread, to the same digests, and refuses one that grows meanwhile", async () => {
    const data = seededBytes(40 << 20, 5);
    data.fill(0, 15 << 20, 17 << 20); // a zero run across a read window's end
    const path = join(dir.path, "large.raw");
    await writeFile(path, data);
    const manifest = await chunkFile(path);
    expectManifestOf(manifest, data);
    expect(manifest.chunks.filter((chunk) => chunk.zero).length).toBeGreaterThan(0);
    // Appended to after the first window is read: what was hashed is not what was chunked.
    let grown = false;
    const growing = chunkFile(path, {
      onProgress: () => {
        if (!grown) appendFileSync(path, Buffer.alloc(1 << 20, 1));
        grown = true;
      },
    });
    await expect(growing).rejects.toThrow(/changed size while it was read/);
  });

  it("hashes bytes handed over in shared memory to the digests it reads from a file, and says when bytes are missing", async () => {
    const data = seededBytes(12 << 20, 21);
    data.fill(0, 5 << 20, 6 << 20);
    const cuts = cutChunks(data);
    const hasher = new FileHasher(undefined, { chunks: true });
    try {
      // Handed over in pieces that do not follow chunk boundaries, each in its own shared memory.
      let at = 0;
      let cut = 0;
      for (const length of [3 << 20, 1, (4 << 20) - 1, 5 << 20]) {
        // Every chunk that begins in the bytes handed over is told first, as a window's are.
        while (cut < cuts.length && (cuts[cut] as ChunkCut).start < at + length) {
          const { start, end, zero } = cuts[cut++] as ChunkCut;
          hasher.addChunk(end - start, zero);
        }
        const piece = Buffer.from(new SharedArrayBuffer(length + 3), 3);
        data.copy(piece, 0, at, at + length);
        await hasher.hashBytes(piece);
        at += length;
      }
      expectManifestOf(await hasher.manifest(data.length), data);
    } finally {
      await hasher.close();
    }
    // Bytes past the chunks told fail the hasher; what is handed over after is not waited on.
    const untold = new FileHasher(undefined, { chunks: true });
    try {
      await untold.hashBytes(Buffer.from(new SharedArrayBuffer(100)));
      await untold.hashBytes(Buffer.from(new SharedArrayBuffer(100)));
      await expect(untold.manifest(200)).rejects.toThrow(/runs past the chunks told/);
    } finally {
      await untold.close();
    }
    const short = new FileHasher(undefined, { chunks: false });
    try {
      await expect(short.hashBytes(Buffer.alloc(10))).rejects.toThrow(/shared memory/);
      await short.hashBytes(Buffer.from(new SharedArrayBuffer(10)));
      await expect(short.digest(20)).rejects.toThrow(/bytes up to 20 were not handed over/);
    } finally {
      await short.close();
    }
  });

  it("handles an empty file", async () => {
    const path = join(dir.path, "empty.raw");
    await writeFile(path, Buffer.alloc(0));
    const manifest = await chunkFile(path);
    expect(manifest).toEqual({ size: 0, digest: sha256Hex(Buffer.alloc(0)), chunks: [] });
  });
});
