import type { FileHandle } from "node:fs/promises";
import { readFully } from "../../common/files.ts";
import { isAllZero, sha256Hex, zeroChunkDigest } from "../../common/image-format/digest.ts";
import type { Manifest } from "../../common/image-format/manifest.ts";
import type { ManifestLayout } from "./image-layout.ts";

/*
 * What a partial image found after a restart holds (see partial-image.ts): nothing in it was
 * fsynced, so every data position is checked against its digest, and only the ones that match
 * count as received. A half-written chunk never matches.
 */

const SCAN_READ_BYTES = 8 << 20;

/** The data positions of `manifest` whose bytes in `file` match their chunk's digest. */
export async function positionsHoldingTheirChunks(
  file: FileHandle,
  manifest: Manifest,
  layout: ManifestLayout,
): Promise<number[]> {
  const { chunks } = manifest;
  const { offsets } = layout;
  const held: number[] = [];
  const buffer = Buffer.allocUnsafe(SCAN_READ_BYTES + 2 * 256 * 1024);
  let i = 0;
  while (i < chunks.length) {
    if (chunks[i]?.zero) {
      i++;
      continue;
    }
    // One read for a run of data chunks.
    const start = offsets[i] as number;
    let end = i;
    while (
      end < chunks.length &&
      !chunks[end]?.zero &&
      (offsets[end + 1] as number) - start <= buffer.length &&
      (end === i || (offsets[end] as number) - start < SCAN_READ_BYTES)
    ) {
      end++;
    }
    const length = (offsets[end] as number) - start;
    await readFully(file, buffer, length, start);
    for (let p = i; p < end; p++) {
      const chunk = chunks[p] as { digest: string; length: number };
      const from = (offsets[p] as number) - start;
      const data = buffer.subarray(from, from + chunk.length);
      // Never-written positions are holes: a memcmp rules them out without hashing.
      const matches = isAllZero(data)
        ? chunk.digest === zeroChunkDigest(chunk.length)
        : sha256Hex(data) === chunk.digest;
      if (matches) held.push(p);
    }
    i = end;
  }
  return held;
}
