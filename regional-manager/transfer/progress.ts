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
  /** The version's chunks and where each stored digest sits (its first position names it). */
  manifest: Manifest;
  positions: ReadonlyMap<string, readonly number[]>;
  /**
   * At the first position of each distinct chunk missing, the number of entries using it,
   * until it arrives (then 0). Counts by position rather than a map of the missing digests:
   * for 1 GiB (131,000 chunks) the map took 50-70 ms to build before a pull's first request,
   * and its lookups and deletes were most of what counting an arriving chunk cost.
   */
  missing: Uint32Array;
  /** The missing chunks these holdings were counted from, and the first position of each (-1: not the version's). */
  counted: readonly ChunkRef[];
  firsts: Int32Array;
}

/** The holdings of `manifest` in a store that lacks the distinct chunks `missing`. */
export function versionHoldings(manifest: Manifest, missing: readonly ChunkRef[]): VersionHoldings {
  // The layout lists each stored chunk's positions (zero runs are holes, whatever chunk shares
  // their digest): a walk over what is missing, not over the whole manifest, before a pull's
  // first request.
  const { positions } = layoutOf(manifest);
  const flags = new Uint32Array(manifest.chunks.length);
  const firsts = new Int32Array(missing.length).fill(-1);
  let bytesMissing = 0;
  let chunksMissing = 0;
  for (const [i, chunk] of missing.entries()) {
    const entries = positions.get(chunk.digest);
    const first = entries?.[0];
    if (entries === undefined || first === undefined || flags[first] !== 0) continue;
    flags[first] = entries.length;
    firsts[i] = first;
    bytesMissing += entries.length * chunk.length;
    chunksMissing += entries.length;
  }
  return {
    bytesTotal: manifest.size,
    chunksTotal: manifest.chunks.length,
    bytesHeld: Math.max(0, manifest.size - bytesMissing),
    chunksHeld: Math.max(0, manifest.chunks.length - chunksMissing),
    manifest,
    positions,
    missing: flags,
    counted: missing,
    firsts,
  };
}

/**
 * The chunks `holdings` were counted as missing that have not arrived since: after an attempt
 * whose writes are done, what is left to ask for, without looking up every chunk of the
 * version in the store again (50 ms after a 1 GiB pull here).
 */
export function notArrived(holdings: VersionHoldings): ChunkRef[] {
  return holdings.counted.filter((_, i) => {
    const first = holdings.firsts[i] as number;
    return first >= 0 && holdings.missing[first] !== 0;
  });
}

/**
 * Counts a chunk that arrived (verified and stored) into `holdings`: the entries it fills
 * are held now. A chunk counted already, or one the version does not lack, adds nothing,
 * so what is held never passes the total. `position`, the chunk's first position in the
 * version when the caller knows it, spares a lookup of its digest.
 */
export function chunkArrived(holdings: VersionHoldings, digest: string, position?: number): void {
  const first = position ?? holdings.positions.get(digest)?.[0];
  if (first === undefined) return;
  const entries = holdings.missing[first];
  if (!entries || holdings.manifest.chunks[first]?.digest !== digest) return;
  holdings.missing[first] = 0;
  const length = (holdings.manifest.chunks[first] as ChunkRef).length;
  holdings.bytesHeld = Math.min(holdings.bytesTotal, holdings.bytesHeld + entries * length);
  holdings.chunksHeld = Math.min(holdings.chunksTotal, holdings.chunksHeld + entries);
}
