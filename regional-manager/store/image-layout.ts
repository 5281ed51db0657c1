import type { ChunkRef, Manifest } from "../../common/image-format/manifest.ts";

/*
 * Where a version's chunks lie in its image file, and which bytes of another version's file an
 * update copies: plain functions of manifests, used by the partial image that is written and
 * by the pull that fills it.
 */

/** One write per run of adjacent chunks, and one read per span of a base copy, up to this size. */
export const RUN_BYTES = 8 << 20;
/*
 * A base copy reads through gaps up to this size between the positions it copies (the chunks
 * an update changed) rather than ending its read there; a longer gap is a run of zero chunks,
 * a hole in the base that is not worth reading.
 */
const MAX_COPY_GAP_BYTES = 256 << 10;

/** Where each chunk of a manifest starts, and the positions of each stored (non-zero) digest. */
export interface ManifestLayout {
  offsets: Float64Array;
  positions: Map<string, number[]>;
}

/*
 * A version's layout is needed by the store when it registers the version's chunks, by the
 * partial image and by a delta pull, each for the same manifest object: about 40 ms apiece
 * for 1 GiB (131,000 chunks), in the time before a pull's first request. Manifests are not
 * changed once built, so the first layout serves them all.
 */
const layouts = new WeakMap<Manifest, ManifestLayout>();

export function layoutOf(manifest: Manifest): ManifestLayout {
  let layout = layouts.get(manifest);
  if (!layout) {
    layout = computeLayout(manifest);
    layouts.set(manifest, layout);
  }
  return layout;
}

/**
 * The distinct non-zero chunks that `isStored` says are absent, in manifest order (so a pull
 * that streams them in this order can be resumed by asking again). The layout's positions are
 * those chunks already: no set of the digests seen is built again for each question.
 */
export function missingChunkRefs(manifest: Manifest, isStored: (digest: string) => boolean): ChunkRef[] {
  const missing: ChunkRef[] = [];
  for (const [digest, positions] of layoutOf(manifest).positions) {
    if (!isStored(digest)) missing.push(manifest.chunks[positions[0] as number] as ChunkRef);
  }
  return missing;
}

function computeLayout(manifest: Manifest): ManifestLayout {
  const offsets = new Float64Array(manifest.chunks.length + 1);
  const positions = new Map<string, number[]>();
  let offset = 0;
  for (const [i, chunk] of manifest.chunks.entries()) {
    offsets[i] = offset;
    offset += chunk.length;
    if (chunk.zero) continue;
    const list = positions.get(chunk.digest);
    if (list) list.push(i);
    else positions.set(chunk.digest, [i]);
  }
  offsets[manifest.chunks.length] = offset;
  return { offsets, positions };
}

/**
 * The data positions of `manifest` whose chunk sits at the same offset, with the same digest, in
 * `base` (another version of the image): after an update that overwrites blocks in place,
 * nearly all of them. Both manifests are in offset order, so one walk finds them.
 */
export function sameOffsetPositions(manifest: Manifest, layout: ManifestLayout, base: Manifest): number[] {
  const found: number[] = [];
  let j = 0;
  let baseOffset = 0;
  for (const [p, chunk] of manifest.chunks.entries()) {
    if (chunk.zero) continue;
    const offset = layout.offsets[p] as number;
    while (j < base.chunks.length && baseOffset < offset) {
      baseOffset += (base.chunks[j] as { length: number }).length;
      j++;
    }
    if (j === base.chunks.length) break;
    const other = base.chunks[j] as { digest: string; length: number; zero?: boolean };
    if (
      baseOffset === offset &&
      !other.zero &&
      other.digest === chunk.digest &&
      other.length === chunk.length
    )
      found.push(p);
  }
  return found;
}

/**
 * The reads of a base copy: each span is read whole, up to RUN_BYTES, through the small gaps
 * the changed chunks leave (read run by run, about 400 KB apart after a 1% scattered change,
 * the copy waited on a few thousand reads), and its extents are written. A gap over
 * MAX_COPY_GAP_BYTES (a run of zero chunks: a hole in the base) ends a span.
 */
export interface CopySpan {
  start: number;
  length: number;
  extents: WriteExtent[];
}

export function copySpans(offsets: Float64Array, positions: readonly number[]): CopySpan[] {
  const spans: CopySpan[] = [];
  let span: CopySpan | undefined;
  for (const position of positions) {
    const offset = offsets[position] as number;
    const length = (offsets[position + 1] as number) - offset;
    const last = span?.extents.at(-1);
    if (span && last && offset + length - span.start <= RUN_BYTES) {
      const gap = offset - (last.offset + last.length);
      if (gap === 0) {
        last.length += length;
        last.positions.push(position);
        span.length += length;
        continue;
      }
      if (gap <= MAX_COPY_GAP_BYTES) {
        span.extents.push({ from: offset - span.start, length, offset, positions: [position] });
        span.length = offset + length - span.start;
        continue;
      }
    }
    span = { start: offset, length, extents: [{ from: 0, length, offset, positions: [position] }] };
    spans.push(span);
  }
  return spans;
}

/** Bytes `from` a buffer, written at image `offset`: the chunks of `positions`. */
export interface WriteExtent {
  from: number;
  length: number;
  offset: number;
  positions: number[];
}
