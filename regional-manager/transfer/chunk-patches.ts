import type { FileHandle } from "node:fs/promises";
import { encodeChunkPatch } from "../../common/image-format/chunk-patch.ts";
import { readBaseBytes } from "../store/base-bytes.ts";
import { READ_BUFFER_BYTES } from "../store/chunk-store.ts";
import type { ImageStore } from "../store/image-store.ts";

export interface PatchedChunk {
  digest: string;
  length: number;
  /** The offset of its first position in the version: where its base's bytes are read. */
  offset: number;
}

/**
 * The patches of `chunks`, in the order given, against the image `base` (another version the
 * puller holds): each chunk's data from the store, compared with the base's bytes at its
 * offset (see common/image-format/chunk-patch.ts). The chunks of a delta lie scattered: their
 * data is read a buffer's worth at a time, those reads issued together (readData), and the
 * base's bytes of each buffer's chunks together too; one read after another, the pieces of a
 * 1% delta of 1 GiB took about 2 s from a disk, the latency of 10,000 small reads.
 */
export async function* chunkPatches(
  store: ImageStore,
  chunks: readonly PatchedChunk[],
  base: FileHandle,
): AsyncGenerator<Buffer> {
  let next = 0; // the first chunk of the next piece of data
  const data = store.chunks.readData(
    chunks.map((chunk) => chunk.digest),
    () => Buffer.allocUnsafe(READ_BUFFER_BYTES),
  );
  for await (const piece of data) {
    const first = next;
    const bases: Buffer[] = [];
    let at = 0;
    while (at < piece.length) {
      const chunk = chunks[next++] as PatchedChunk;
      bases.push(Buffer.allocUnsafe(chunk.length));
      at += chunk.length;
    }
    await Promise.all(
      bases.map((into, k) => readBaseBytes(base, (chunks[first + k] as PatchedChunk).offset, into)),
    );
    at = 0;
    const patches = bases.map((into, k) => {
      const chunk = chunks[first + k] as PatchedChunk;
      const patch = encodeChunkPatch(piece.subarray(at, at + chunk.length), into, chunk.offset);
      at += chunk.length;
      return patch;
    });
    yield Buffer.concat(patches);
  }
}
