import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import {
  type ChunkingParameters,
  chunkWindow,
  DEFAULT_CHUNKING,
  masksFor,
  ZERO_CHUNK_LENGTH,
} from "./chunking.ts";
import { sha256Hex, zeroChunkDigest } from "./digest.ts";
import type { ChunkRef, Manifest } from "./manifest.ts";

const WINDOW_BYTES = 8 << 20;

export interface ChunkFileOptions {
  params?: ChunkingParameters;
  /** Called after each window of the file has been chunked and hashed. */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  signal?: AbortSignal;
}

/**
 * Chunks a file and computes every chunk digest and the whole-file digest in one pass.
 * Chunks are views into one reusable window: they are hashed, never copied.
 */
export async function chunkFile(path: string, options: ChunkFileOptions = {}): Promise<Manifest> {
  const params = options.params ?? DEFAULT_CHUNKING;
  const masks = masksFor(params);
  const file = await open(path, "r");
  try {
    const size = (await file.stat()).size;
    const window = Buffer.allocUnsafe(Math.max(WINDOW_BYTES, params.maxLength * 4, ZERO_CHUNK_LENGTH * 4));
    const whole = createHash("sha256");
    const chunks: ChunkRef[] = [];
    let filled = 0; // bytes of window holding data
    let start = 0; // first byte of the window not yet in a chunk
    let offset = 0; // bytes of the file read so far
    for (;;) {
      options.signal?.throwIfAborted();
      // Move the undecided tail (a few chunks at most) to the front and refill.
      if (start > 0) {
        window.copy(window, 0, start, filled);
        filled -= start;
        start = 0;
      }
      const { bytesRead } = await file.read(window, filled, window.length - filled, offset);
      whole.update(window.subarray(filled, filled + bytesRead));
      filled += bytesRead;
      offset += bytesRead;
      const final = bytesRead === 0 || offset >= size;
      const base = offset - filled; // image offset of window[0]
      start = chunkWindow(window, start, filled, final, base, params, masks, (cut) => {
        const length = cut.end - cut.start;
        chunks.push({
          digest: cut.zero ? zeroChunkDigest(length) : sha256Hex(window.subarray(cut.start, cut.end)),
          length,
          zero: cut.zero,
        });
      });
      options.onProgress?.(offset, size);
      if (final) break;
    }
    return { size: offset, digest: whole.digest("hex"), chunks };
  } finally {
    await file.close();
  }
}
