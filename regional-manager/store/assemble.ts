import { createHash } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import type { ChunkStore } from "./chunk-store.ts";
import { zeroBytes } from "./digest.ts";
import type { Manifest } from "./manifest.ts";

const WRITE_BATCH_BYTES = 8 << 20;

/**
 * Writes the image a manifest describes into `file` (already truncated to its size, so
 * zero runs stay holes: the file is sparse) and returns the SHA-256 of what it wrote.
 * Adjacent chunks are copied into one of two staging buffers and written with one write
 * while the other fills (a writev of thousands of small buffers measured ~15x slower).
 */
export async function writeImage(store: ChunkStore, manifest: Manifest, file: FileHandle): Promise<string> {
  const whole = createHash("sha256");
  const stored = manifest.chunks.filter((chunk) => !chunk.zero).map((chunk) => chunk.digest);
  const reader = stored.length > 0 ? store.readMany(stored)[Symbol.asyncIterator]() : undefined;
  const buffers = [Buffer.allocUnsafe(WRITE_BATCH_BYTES), Buffer.allocUnsafe(WRITE_BATCH_BYTES)];
  let current = 0;
  let staged = 0;
  let stagedOffset = 0;
  let pendingWrite: Promise<void> = Promise.resolve();
  const writeStaged = async () => {
    if (staged === 0) return;
    const buffer = (buffers[current] as Buffer).subarray(0, staged);
    const offset = stagedOffset;
    await pendingWrite; // the other buffer is free again once its write is done
    pendingWrite = writeAll(file, buffer, offset);
    pendingWrite.catch(() => {}); // observed by the next await; avoids an unhandled rejection meanwhile
    current = 1 - current;
    staged = 0;
  };
  let offset = 0;
  for (const chunk of manifest.chunks) {
    if (chunk.zero) {
      await writeStaged();
      whole.update(zeroBytes(chunk.length));
    } else {
      const next = await (reader as AsyncIterator<Buffer>).next();
      if (next.done) throw new Error("chunk store yielded fewer chunks than asked");
      whole.update(next.value);
      if (staged + next.value.length > WRITE_BATCH_BYTES) await writeStaged();
      if (staged === 0) stagedOffset = offset;
      next.value.copy(buffers[current] as Buffer, staged);
      staged += next.value.length;
    }
    offset += chunk.length;
  }
  await writeStaged();
  await pendingWrite;
  return whole.digest("hex");
}

async function writeAll(file: FileHandle, buffer: Buffer, offset: number): Promise<void> {
  let done = 0;
  while (done < buffer.length) {
    done += (await file.write(buffer, done, buffer.length - done, offset + done)).bytesWritten;
  }
}
