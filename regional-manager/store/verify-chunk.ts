import { sha256Hex } from "../../common/image-format/digest.ts";
import { StoreError } from "./errors.ts";

/**
 * Throws CHUNK_DIGEST_MISMATCH unless `data` is the chunk `digest` names: every chunk that
 * enters the store, uploaded or pulled, passes here before it is written.
 */
export function verifyChunk(digest: string, data: Uint8Array): void {
  if (sha256Hex(data) !== digest) {
    throw new StoreError("CHUNK_DIGEST_MISMATCH", `chunk ${digest} does not match its digest`);
  }
}
