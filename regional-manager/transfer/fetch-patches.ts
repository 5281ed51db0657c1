import type { FileHandle } from "node:fs/promises";
import { binaryRequest, readAll } from "../../common/binary-http.ts";
import { applyChunkPatch, ChunkPatchError } from "../../common/image-format/chunk-patch.ts";
import { encodeDigestList } from "../../common/image-format/manifest.ts";
import { readBaseBytes } from "../store/base-bytes.ts";
import { StoreError } from "../store/errors.ts";
import type { ImageStore } from "../store/image-store.ts";

export interface PatchRequest {
  /** The source's .../patches URL for the version, with `base` (and `peer`) in its query. */
  url: string;
  token: string;
  /** This store's image of the base version, which the source patches against. */
  base: FileHandle;
  digests: readonly string[];
  /** Where each chunk's first position starts in the version, and its length: its base's bytes. */
  places: ReadonlyArray<{ offset: number; length: number }>;
  signal?: AbortSignal | undefined;
}

/**
 * Fetches `digests` as patches against a base version both sides hold, rebuilds each chunk
 * from this store's copy of the base and stores it if it matches its digest, as a whole chunk
 * would be. One that does not match (the source's base or ours differs where it should not)
 * is left missing, to be fetched whole; the count of those is returned. Any other failure
 * (the source has no such route or base, a malformed answer, a local fault) throws.
 */
export async function fetchPatches(
  store: ImageStore,
  imageId: string,
  version: number,
  request: PatchRequest,
  events: { onChunk: (digest: string, wireLength: number) => void; onWire: (bytes: number) => void },
): Promise<number> {
  const body = encodeDigestList(request.digests);
  events.onWire(body.length);
  // The base's bytes are read while the source reads and compares.
  const reading = Promise.all(
    request.places.map(async ({ offset, length }) => {
      const chunk = Buffer.allocUnsafe(length);
      await readBaseBytes(request.base, offset, chunk);
      return chunk;
    }),
  );
  reading.catch(() => {}); // awaited below, unless the request fails first
  const response = await binaryRequest({
    method: "POST",
    url: request.url,
    headers: { authorization: `Bearer ${request.token}` },
    body,
    signal: request.signal,
  });
  const answer = await readAll(response);
  events.onWire(answer.length);
  const chunks = await reading;
  const writer = await store.receiver(imageId, version);
  let mismatched = 0;
  try {
    let at = 0;
    for (const [k, digest] of request.digests.entries()) {
      const next = applyChunkPatch(answer, at, chunks[k] as Buffer);
      try {
        await writer.receive(digest, chunks[k] as Buffer);
        events.onChunk(digest, next - at);
      } catch (error) {
        if (!(error instanceof StoreError && error.code === "CHUNK_DIGEST_MISMATCH")) throw error;
        mismatched++;
      }
      at = next;
    }
    if (at !== answer.length) throw new ChunkPatchError("the patches go on past the last chunk asked for");
  } finally {
    // What was verified is kept even when the request fails; the writes finish in the background.
    writer.release();
  }
  return mismatched;
}
