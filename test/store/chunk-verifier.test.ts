// Chunks checked on the verifier's thread, where they lie in shared memory.
import { describe, expect, it } from "vitest";
import { sha256Hex } from "../../common/image-format/digest.ts";
import { type ChunkCheck, ChunkVerifier } from "../../regional-manager/store/chunk-verifier.ts";
import { alignedBuffer } from "../../regional-manager/store/direct-io.ts";
import { seededBytes } from "../support/transfer.ts";

/** A buffer of `memory` holding chunks of odd lengths, and their checks (`corrupt`: those to damage). */
function chunksIn(memory: Buffer, corrupt: ReadonlySet<number>): ChunkCheck[] {
  const checks: ChunkCheck[] = [];
  let from = 100;
  for (let i = 0; i < 40; i++) {
    const length = 2048 + i * 997;
    const data = seededBytes(length, i);
    data.copy(memory, from);
    checks.push({ from, length, digest: sha256Hex(data) });
    if (corrupt.has(i)) memory[from + (i % length)] = (memory[from + (i % length)] as number) ^ 1;
    from += length;
  }
  return checks;
}

describe("ChunkVerifier", () => {
  it("finds exactly the chunks that do not match, on its thread or, for memory it cannot share, here", async () => {
    const verifier = new ChunkVerifier();
    try {
      const shared = alignedBuffer(2 << 20, { shared: true }).subarray(4096 + 7);
      expect(await verifier.verify(shared, chunksIn(shared, new Set()))).toEqual([]);
      expect(await verifier.verify(shared, chunksIn(shared, new Set([0, 17, 39])))).toEqual([0, 17, 39]);
      const plain = Buffer.alloc(2 << 20);
      expect(await verifier.verify(plain, chunksIn(plain, new Set([5])))).toEqual([5]);
      // Asked together, answered each for its own.
      const other = alignedBuffer(2 << 20, { shared: true });
      const answers = await Promise.all([
        verifier.verify(shared, chunksIn(shared, new Set([3]))),
        verifier.verify(other, chunksIn(other, new Set([4]))),
      ]);
      expect(answers).toEqual([[3], [4]]);
    } finally {
      await verifier.close();
    }
    // Closed, it still answers, checking here.
    const shared = alignedBuffer(1 << 20, { shared: true });
    expect(await verifier.verify(shared, chunksIn(shared, new Set([9])).slice(0, 20))).toEqual([9]);
  });
});
