// Chunks checked on the verifier's thread, where they lie in shared memory.
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
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

/** What `body` prints, run as a module in a process of its own that must end within 10 s. */
async function runModule(body: string): Promise<string> {
  const at = (path: string) => JSON.stringify(fileURLToPath(new URL(path, import.meta.url)));
  const script = `import { ChunkVerifier } from ${at("../../regional-manager/store/chunk-verifier.ts")};
    import { alignedBuffer } from ${at("../../regional-manager/store/direct-io.ts")};
    ${body}`;
  const { stdout } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script], {
    timeout: 10_000,
  });
  return stdout.trim();
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

  it("started ahead of its first check, answers from its thread and does not keep a process alive", async () => {
    const verifier = new ChunkVerifier();
    verifier.warmUp();
    const shared = alignedBuffer(2 << 20, { shared: true });
    expect(await verifier.verify(shared, chunksIn(shared, new Set([2, 30])))).toEqual([2, 30]);
    await verifier.close();
    // In a process evaluated as a module (which an evaluated worker inherits), the thread
    // answers the check itself; and warmed up, never asked, the verifier lets it end by itself.
    const answered = await runModule(`
      const verifier = new ChunkVerifier();
      const memory = alignedBuffer(1 << 20, { shared: true });
      const bad = await verifier.verify(memory, [{ from: 0, length: 4096, digest: "0".repeat(64) }]);
      console.log(JSON.stringify({ bad, onThread: !verifier["broken"] }));`);
    expect(JSON.parse(answered)).toEqual({ bad: [0], onThread: true });
    const warmed = await runModule(`
      const verifier = new ChunkVerifier();
      verifier.warmUp();
      const waiting = setInterval(() => {}, 1000);
      await new Promise((resolve, reject) => {
        verifier["worker"].once("online", resolve).once("error", reject).once("exit", reject);
      });
      clearInterval(waiting);
      console.log("online");`);
    expect(warmed).toBe("online");
  });
});
