import { MAX_CHUNK_LENGTH } from "./manifest.ts";

/*
 * A chunk sent as the bytes where it differs from the base version's bytes at the same image
 * offset. An update that overwrites 4 KiB blocks in place changes a few blocks of each chunk
 * it touches, but content-defined chunks are 2-64 KiB: sent whole, a 1% scattered change
 * cost about 5% of the image on the wire. Both sides hold the base version (the puller named
 * it, the source has it available), so the source compares and the puller rebuilds the chunk
 * from its own copy of the base and checks it against the chunk's digest like any other.
 *
 * Blocks are PATCH_BLOCK bytes aligned to image offsets (disk sectors), so a chunk's patch is
 * a list of runs of differing blocks:
 *   u32 run count | count x (u32 start in chunk, u32 length) | the runs' bytes, in order
 * "The base's bytes" of a chunk are the base image's bytes at the offset of the chunk's first
 * position in the new manifest, with zeros past the base's end.
 */
export const PATCH_BLOCK = 512;
const RUN_HEADER_BYTES = 8;

export class ChunkPatchError extends Error {
  readonly code = "INVALID_CHUNK_PATCH";
}

/** The runs `[start, end)` of `next` that differ from `base` (same length), for a chunk at image `offset`. */
export function differingRuns(next: Buffer, base: Buffer, offset: number): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  const length = next.length;
  let start = 0;
  let end = Math.min(length, PATCH_BLOCK - (offset % PATCH_BLOCK));
  while (start < length) {
    // Buffer#compare with ranges is a memcmp: no views are made.
    if (next.compare(base, start, end, start, end) !== 0) {
      const last = runs.at(-1);
      if (last && last[1] === start) last[1] = end;
      else runs.push([start, end]);
    }
    start = end;
    end = Math.min(length, end + PATCH_BLOCK);
  }
  return runs;
}

/** Bytes of the patch encoding `runs` (see the top). */
export function patchBytes(runs: ReadonlyArray<readonly [number, number]>): number {
  let bytes = 4;
  for (const [start, end] of runs) bytes += RUN_HEADER_BYTES + end - start;
  return bytes;
}

/**
 * The patch of `next` against `base` for a chunk at image `offset`; the whole chunk as one run
 * where the differences would not be smaller.
 */
export function encodeChunkPatch(next: Buffer, base: Buffer, offset: number): Buffer {
  let runs = differingRuns(next, base, offset);
  if (patchBytes(runs) >= patchBytes([[0, next.length]])) runs = [[0, next.length]];
  const out = Buffer.allocUnsafe(patchBytes(runs));
  out.writeUInt32BE(runs.length, 0);
  let header = 4;
  let data = 4 + runs.length * RUN_HEADER_BYTES;
  for (const [start, end] of runs) {
    out.writeUInt32BE(start, header);
    out.writeUInt32BE(end - start, header + 4);
    header += RUN_HEADER_BYTES;
    data += next.copy(out, data, start, end);
  }
  return out;
}

/**
 * Reads one chunk's patch at `at` of `input` and applies it to `chunk`, which holds the
 * base's bytes and becomes the chunk (to be verified against its digest by the caller).
 * Returns where the next patch starts; throws ChunkPatchError for a malformed one.
 */
export function applyChunkPatch(input: Buffer, at: number, chunk: Buffer): number {
  if (at + 4 > input.length) throw new ChunkPatchError("a chunk patch is truncated");
  const count = input.readUInt32BE(at);
  if (count > MAX_CHUNK_LENGTH / PATCH_BLOCK + 1)
    throw new ChunkPatchError(`a chunk patch declares ${count} runs`);
  let header = at + 4;
  let data = header + count * RUN_HEADER_BYTES;
  if (data > input.length) throw new ChunkPatchError("a chunk patch is truncated");
  let previousEnd = 0;
  for (let i = 0; i < count; i++) {
    const start = input.readUInt32BE(header);
    const length = input.readUInt32BE(header + 4);
    header += RUN_HEADER_BYTES;
    if (length === 0 || start < previousEnd || start + length > chunk.length) {
      throw new ChunkPatchError(
        `a chunk patch has a run of ${length} bytes at ${start} in a chunk of ${chunk.length}`,
      );
    }
    if (data + length > input.length) throw new ChunkPatchError("a chunk patch is truncated");
    input.copy(chunk, start, data, data + length);
    data += length;
    previousEnd = start + length;
  }
  return data;
}
