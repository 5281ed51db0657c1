import { type ChunkHash, chunkDigest } from "../../common/image-format/digest.ts";
import { StoreError } from "./errors.ts";

/**
 * Throws CHUNK_DIGEST_MISMATCH unless `data` is the chunk `digest` names under `chunkHash`
 * (its manifest's): every chunk that enters the store, uploaded or pulled, passes here or
 * through the verifier thread (chunk-verifier.ts) before it is written.
 */
export function verifyChunk(digest: string, data: Uint8Array, chunkHash: ChunkHash): void {
  if (chunkDigest(data, chunkHash) !== digest) mismatch(digest);
}

/**
 * `verifyChunk` for a chunk the store moves between its own files, whose manifest is not at
 * hand: its digest may be BLAKE3's or SHA-256's. Accepting either admits nothing else: data
 * whose digest under one hash equals another chunk's digest under the other would be a
 * preimage of a 256-bit hash.
 */
export function verifyStoredChunk(digest: string, data: Uint8Array): void {
  if (chunkDigest(data, "blake3") !== digest && chunkDigest(data, "sha256") !== digest) mismatch(digest);
}

function mismatch(digest: string): never {
  throw new StoreError("CHUNK_DIGEST_MISMATCH", `chunk ${digest} does not match its digest`);
}
