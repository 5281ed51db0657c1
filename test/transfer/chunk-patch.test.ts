import { describe, expect, it } from "vitest";
import {
  applyChunkPatch,
  ChunkPatchError,
  differingRuns,
  encodeChunkPatch,
  PATCH_BLOCK,
} from "../../common/image-format/chunk-patch.ts";
import { seededBytes } from "../support/transfer.ts";

/** The chunk rebuilt from `base` and its patch, as a puller does. */
function rebuilt(base: Buffer, patch: Buffer): Buffer {
  const chunk = Buffer.from(base);
  expect(applyChunkPatch(patch, 0, chunk)).toBe(patch.length);
  return chunk;
}

describe("chunk patches", () => {
  const base = seededBytes(20_000, 7);

  it("sends only the 512-byte blocks, aligned to image offsets, that differ", () => {
    const next = Buffer.from(base);
    // A chunk at image offset 1000: its blocks start at 0, 24 (=1024-1000), 536, ...
    next[30] = (next[30] as number) ^ 1; // in the block [24, 536)
    next[600] = (next[600] as number) ^ 1; // in [536, 1048): adjacent, so one run
    next[19_999] = (next[19_999] as number) ^ 1; // in the last, short block
    const runs = differingRuns(next, base, 1000);
    expect(runs).toEqual([
      [24, 1048],
      [24 + 39 * PATCH_BLOCK, 20_000],
    ]);
    const patch = encodeChunkPatch(next, base, 1000);
    expect(patch.length).toBe(4 + 2 * 8 + (1048 - 24) + (20_000 - (24 + 39 * PATCH_BLOCK)));
    expect(rebuilt(base, patch).equals(next)).toBe(true);
  });

  it("sends an unchanged chunk as no runs, and one that changed throughout whole", () => {
    expect(encodeChunkPatch(base, base, 0).length).toBe(4);
    expect(rebuilt(base, encodeChunkPatch(base, base, 0)).equals(base)).toBe(true);
    const other = seededBytes(base.length, 8);
    const patch = encodeChunkPatch(other, base, 123);
    expect(patch.length).toBe(4 + 8 + other.length);
    expect(rebuilt(base, patch).equals(other)).toBe(true);
  });

  it("reads patches one after another from one answer", () => {
    const a = Buffer.from(base);
    a.fill(1, 5000, 9000);
    const b = seededBytes(3000, 9);
    const answer = Buffer.concat([
      encodeChunkPatch(a, base, 0),
      encodeChunkPatch(b, base.subarray(0, 3000), 0),
    ]);
    const first = Buffer.from(base);
    const end = applyChunkPatch(answer, 0, first);
    const second = Buffer.from(base.subarray(0, 3000));
    expect(applyChunkPatch(answer, end, second)).toBe(answer.length);
    expect(first.equals(a)).toBe(true);
    expect(second.equals(b)).toBe(true);
  });

  it("refuses malformed patches, changing nothing it cannot place", () => {
    const chunk = Buffer.alloc(4096);
    const patch = (runs: Array<[number, number]>, data = 0) => {
      const out = Buffer.alloc(4 + runs.length * 8 + data);
      out.writeUInt32BE(runs.length, 0);
      runs.forEach(([start, length], i) => {
        out.writeUInt32BE(start, 4 + i * 8);
        out.writeUInt32BE(length, 8 + i * 8);
      });
      return out;
    };
    const cases: Array<[Buffer, RegExp]> = [
      [Buffer.alloc(2), /truncated/],
      [patch([[0, 100]], 99), /truncated/],
      [patch([[4000, 200]], 200), /run of 200 bytes at 4000 in a chunk of 4096/],
      [patch([[0, 0]]), /run of 0 bytes/],
      [
        patch(
          [
            [100, 100],
            [150, 10],
          ],
          110,
        ),
        /run of 10 bytes at 150/,
      ],
      [
        patch(
          Array.from({ length: 600 }, (_, i) => [i * 8, 1] as [number, number]),
          600,
        ),
        /declares 600 runs/,
      ],
    ];
    for (const [input, message] of cases) {
      expect(() => applyChunkPatch(input, 0, chunk)).toThrow(ChunkPatchError);
      expect(() => applyChunkPatch(input, 0, chunk)).toThrow(message);
    }
  });
});
