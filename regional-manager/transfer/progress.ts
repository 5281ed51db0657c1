import type { ChunkRef, Manifest } from "../../common/image-format/manifest.ts";
import { layoutOf } from "../store/image-layout.ts";

/**
 * How much of one image version a store holds, counted in the version's own bytes: the
 * total is the image's size (every chunk entry of its manifest, zero runs included), and
 * what is held counts the zero runs (never sent) and every entry whose chunk is stored,
 * however it got there: an earlier, interrupted pull, or another version or image that
 * shares it. So a pull resumed at 80 of 100 bytes reports 80/100 and climbs to 100/100;
 * it never reports only what is still missing as the total.
 */
export interface VersionHoldings {
  bytesTotal: number;
  chunksTotal: number;
  bytesHeld: number;
  chunksHeld: number;
  /** Each missing chunk's share of the version (its length times the entries using it), until it arrives. */
  missing: Map<string, { bytes: number; chunks: number }>;
}

/** The holdings of `manifest` in a store that lacks the distinct chunks `missing`. */
export function versionHoldings(manifest: Manifest, missing: readonly ChunkRef[]): VersionHoldings {
  // The layout lists each stored chunk's positions (zero runs are holes, whatever chunk shares
  // their digest): a walk over what is missing, not over the whole manifest, before a pull's
  // first request.
  const { positions } = layoutOf(manifest);
  const shares = new Map<string, { bytes: number; chunks: number }>();
  let bytesMissing = 0;
  let chunksMissing = 0;
  for (const chunk of missing) {
    const entries = positions.get(chunk.digest)?.length ?? 0;
    if (entries === 0 || shares.has(chunk.digest)) continue;
    shares.set(chunk.digest, { bytes: entries * chunk.length, chunks: entries });
    bytesMissing += entries * chunk.length;
    chunksMissing += entries;
  }
  return {
    bytesTotal: manifest.size,
    chunksTotal: manifest.chunks.length,
    bytesHeld: Math.max(0, manifest.size - bytesMissing),
    chunksHeld: Math.max(0, manifest.chunks.length - chunksMissing),
    missing: shares,
  };
}

/**
 * Counts a chunk that arrived (verified and stored) into `holdings`: the entries it fills
 * are held now. A chunk counted already, or one the version does not lack, adds nothing,
 * so what is held never passes the total.
 */
export function chunkArrived(holdings: VersionHoldings, digest: string): void {
  const share = holdings.missing.get(digest);
  if (!share) return;
  holdings.missing.delete(digest);
  holdings.bytesHeld = Math.min(holdings.bytesTotal, holdings.bytesHeld + share.bytes);
  holdings.chunksHeld = Math.min(holdings.chunksTotal, holdings.chunksHeld + share.chunks);
}
