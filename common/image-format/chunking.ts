import { createHash } from "node:crypto";

/**
 * Content-defined chunking (FastCDC: gear rolling hash, cut-point skipping below the
 * minimum length, and normalised chunking with a harder mask before the average length and
 * an easier one after it).
 *
 * Parameters (measured with `npm run bench:transfer`, see the closing note of issue 3):
 * - average 8 KiB: a scattered 4 KiB write changes the chunk it lands in, one more when it
 *   straddles or erases a boundary; measured, that is ~1.9x the average per write. At 16 KiB
 *   the 1% benchmark sent ~7.7% of the image, no better than rsync's ~7.75%; at 8 KiB it
 *   sends about half that. The cost is a larger manifest (36 bytes per chunk: ~4.5 MiB per
 *   GiB, 0.45%) and more per-chunk work, which the throughput figures include.
 * - minimum 2 KiB: the skipped prefix is where FastCDC gets its speed; a quarter of the
 *   average is the usual balance between speed and deduplication.
 * - maximum 64 KiB: bounds memory per chunk.
 * Runs of zeros are not cut by content (the gear hash of zeros is a constant that matches
 * neither mask, so they would become maximum-length chunks aligned to whatever preceded
 * them, and a write inside a hole would shift every chunk up to the hole's end): aligned
 * 4 KiB zero blocks forming a run of at least 16 KiB are cut out as zero chunks, with forced
 * boundaries at both ends of the run (see `chunkWindow`).
 *
 * These values define chunk boundaries, so changing them only costs deduplication against
 * chunks already stored; nothing else depends on them.
 */
export interface ChunkingParameters {
  minLength: number;
  averageLength: number;
  maxLength: number;
}

export const DEFAULT_CHUNKING: ChunkingParameters = {
  minLength: 2 * 1024,
  averageLength: 8 * 1024,
  maxLength: 64 * 1024,
};

/** Zero runs are found in blocks of this size, aligned to offsets in the image. */
export const ZERO_BLOCK = 4096;
/** Shorter zero stretches are ordinary data. */
export const MIN_ZERO_RUN = 4 * ZERO_BLOCK;
/** Zero runs are cut into chunks of this length (they are never stored nor sent). */
export const ZERO_CHUNK_LENGTH = 256 * 1024;

let gear: Int32Array | undefined;

/**
 * The gear table is derived from a fixed seed so that every client and manager cuts alike. It
 * is made on first use, not at import: its 256 hashes would be paid by every process that
 * imports this module, each start of the Terraform provider included, and most never chunk.
 */
export function gearTable(): Int32Array {
  if (!gear) {
    gear = new Int32Array(256);
    for (let i = 0; i < 256; i++) {
      gear[i] = createHash("sha256").update(`globalvm gear v1 ${i}`).digest().readInt32BE(0);
    }
  }
  return gear;
}

/**
 * A mask of `bits` ones in the high end of a 32-bit word: with `h = (h << 1) + gear[b]`,
 * bit k depends on the last k + 1 bytes, so high bits give the widest window.
 */
export function highBitsMask(bits: number): number {
  return (((1 << bits) - 1) << (32 - bits)) | 0;
}

export interface ChunkMasks {
  /** Harder mask used before the average length (normalisation level 2: two more bits). */
  small: number;
  /** Easier mask used after it (two fewer bits). */
  large: number;
}

export function masksFor(params: ChunkingParameters): ChunkMasks {
  const bits = Math.round(Math.log2(params.averageLength));
  return { small: highBitsMask(bits + 2), large: highBitsMask(bits - 2) };
}

export function validateChunkingParameters(params: ChunkingParameters): void {
  const { minLength, averageLength, maxLength } = params;
  if (!(minLength >= 64 && minLength <= averageLength && averageLength <= maxLength)) {
    throw new RangeError("chunking parameters must satisfy 64 <= min <= average <= max");
  }
  if (2 ** Math.round(Math.log2(averageLength)) !== averageLength) {
    throw new RangeError("the average chunk length must be a power of two");
  }
}

/**
 * The end (exclusive) of the chunk that starts at `start`, or -1 when more data is needed
 * to decide (`final` says no more data will come after `end`).
 */
export function findChunkEnd(
  data: Uint8Array,
  start: number,
  end: number,
  final: boolean,
  params: ChunkingParameters,
  masks: ChunkMasks,
): number {
  const available = end - start;
  if (available <= params.minLength) return final ? end : -1;
  const limit = start + Math.min(available, params.maxLength);
  const normal = start + Math.min(available, params.averageLength);
  const gear = gearTable();
  const small = masks.small;
  const large = masks.large;
  let h = 0;
  let i = start + params.minLength;
  // Eight bytes per iteration, written out: V8 checks for interrupts and bounds on every turn
  // of a loop, and this loop is the cutting. Measured on 256 MiB of random bytes, one core:
  // 1.38 s per GiB one byte per turn, 0.86 two, 0.64 eight (identical cuts).
  for (; i + 8 <= normal; i += 8) {
    h = ((h << 1) + (gear[data[i + 0] as number] as number)) | 0;
    if ((h & small) === 0) return i + 1;
    h = ((h << 1) + (gear[data[i + 1] as number] as number)) | 0;
    if ((h & small) === 0) return i + 2;
    h = ((h << 1) + (gear[data[i + 2] as number] as number)) | 0;
    if ((h & small) === 0) return i + 3;
    h = ((h << 1) + (gear[data[i + 3] as number] as number)) | 0;
    if ((h & small) === 0) return i + 4;
    h = ((h << 1) + (gear[data[i + 4] as number] as number)) | 0;
    if ((h & small) === 0) return i + 5;
    h = ((h << 1) + (gear[data[i + 5] as number] as number)) | 0;
    if ((h & small) === 0) return i + 6;
    h = ((h << 1) + (gear[data[i + 6] as number] as number)) | 0;
    if ((h & small) === 0) return i + 7;
    h = ((h << 1) + (gear[data[i + 7] as number] as number)) | 0;
    if ((h & small) === 0) return i + 8;
  }
  for (; i < normal; i++) {
    h = ((h << 1) + (gear[data[i] as number] as number)) | 0;
    if ((h & small) === 0) return i + 1;
  }
  for (; i + 8 <= limit; i += 8) {
    h = ((h << 1) + (gear[data[i + 0] as number] as number)) | 0;
    if ((h & large) === 0) return i + 1;
    h = ((h << 1) + (gear[data[i + 1] as number] as number)) | 0;
    if ((h & large) === 0) return i + 2;
    h = ((h << 1) + (gear[data[i + 2] as number] as number)) | 0;
    if ((h & large) === 0) return i + 3;
    h = ((h << 1) + (gear[data[i + 3] as number] as number)) | 0;
    if ((h & large) === 0) return i + 4;
    h = ((h << 1) + (gear[data[i + 4] as number] as number)) | 0;
    if ((h & large) === 0) return i + 5;
    h = ((h << 1) + (gear[data[i + 5] as number] as number)) | 0;
    if ((h & large) === 0) return i + 6;
    h = ((h << 1) + (gear[data[i + 6] as number] as number)) | 0;
    if ((h & large) === 0) return i + 7;
    h = ((h << 1) + (gear[data[i + 7] as number] as number)) | 0;
    if ((h & large) === 0) return i + 8;
  }
  for (; i < limit; i++) {
    h = ((h << 1) + (gear[data[i] as number] as number)) | 0;
    if ((h & large) === 0) return i + 1;
  }
  if (available >= params.maxLength) return start + params.maxLength;
  return final ? end : -1;
}

const ZEROS = new Uint8Array(ZERO_BLOCK);

function isZeroBlock(data: Uint8Array, at: number): boolean {
  // Most data blocks are told by a byte at either end, before a view is made for the memcmp
  // (Buffer#equals, which stops at the first non-zero byte): a view per 4 KiB block was a
  // quarter of a million objects per GiB for the garbage collector.
  if (data[at] !== 0 || data[at + ZERO_BLOCK - 1] !== 0) return false;
  return Buffer.from(data.buffer, data.byteOffset + at, ZERO_BLOCK).equals(ZEROS);
}

/**
 * The first run of at least MIN_ZERO_RUN bytes of zero blocks (aligned so that
 * `base + position` is a multiple of ZERO_BLOCK) inside [from, to), or undefined.
 */
export function findZeroRun(
  data: Uint8Array,
  from: number,
  to: number,
  base: number,
): { start: number; end: number } | undefined {
  let block = from + ((ZERO_BLOCK - ((base + from) % ZERO_BLOCK)) % ZERO_BLOCK);
  while (block + ZERO_BLOCK <= to) {
    if (!isZeroBlock(data, block)) {
      block += ZERO_BLOCK;
      continue;
    }
    const start = block;
    let end = block + ZERO_BLOCK;
    while (end + ZERO_BLOCK <= to && isZeroBlock(data, end)) end += ZERO_BLOCK;
    if (end - start >= MIN_ZERO_RUN) return { start, end };
    block = end + ZERO_BLOCK;
  }
  return undefined;
}

export interface ChunkCut {
  start: number;
  end: number;
  zero: boolean;
}

/**
 * Cuts the chunks that can be decided in data[start, filled) (`base` is the image offset of
 * data[0], `final` says the image ends at `filled`), calling `emit` for each; returns where
 * the undecided rest begins. Cuts never depend on where a read window happens to end: a
 * data chunk is only cut when enough bytes follow it to see a zero run that starts inside it.
 */
export function chunkWindow(
  data: Uint8Array,
  start: number,
  filled: number,
  final: boolean,
  base: number,
  params: ChunkingParameters,
  masks: ChunkMasks,
  emit: (cut: ChunkCut) => void,
): number {
  const lookahead = MIN_ZERO_RUN + ZERO_BLOCK;
  for (;;) {
    const run = findZeroRun(data, start, filled, base);
    const dataEnd = run ? run.start : filled;
    while (start < dataEnd) {
      const decided = run !== undefined || final;
      const end = findChunkEnd(data, start, dataEnd, decided, params, masks);
      if (end < 0 || (!decided && end + lookahead > filled)) return start;
      emit({ start, end, zero: false });
      start = end;
    }
    if (!run) return start;
    const open = run.end + ZERO_BLOCK > filled && !final; // the run may go on past the window
    // An open run keeps at least MIN_ZERO_RUN unconsumed, so the next window finds it again.
    while (run.end - start >= ZERO_CHUNK_LENGTH + (open ? MIN_ZERO_RUN : 0)) {
      emit({ start, end: start + ZERO_CHUNK_LENGTH, zero: true });
      start += ZERO_CHUNK_LENGTH;
    }
    if (open) return start;
    if (start < run.end) emit({ start, end: run.end, zero: true });
    start = run.end;
  }
}

/** Chunk lengths of an in-memory buffer (used by tests and small inputs). */
export function chunkLengths(data: Uint8Array, params: ChunkingParameters = DEFAULT_CHUNKING): number[] {
  return cutChunks(data, params).map((cut) => cut.end - cut.start);
}

export function cutChunks(data: Uint8Array, params: ChunkingParameters = DEFAULT_CHUNKING): ChunkCut[] {
  const cuts: ChunkCut[] = [];
  chunkWindow(data, 0, data.length, true, 0, params, masksFor(params), (cut) => cuts.push(cut));
  return cuts;
}

/** A chunk decided in a ChunkingWindow: where it lies in the image, and its bytes (a view). */
export interface WindowChunk {
  offset: number;
  length: number;
  zero: boolean;
  data: Buffer;
}

/**
 * A byte stream being cut into chunks, a window at a time: the stream's bytes are put into
 * `free()`, `cut` decides every chunk it can (cuts never depend on where a window ends, see
 * chunkWindow), and `shift` drops the decided bytes, moving the undecided rest (a few chunks
 * at most) to the front of the window or of another buffer, so that a caller still writing
 * the decided bytes elsewhere can keep the old one until it is done. What chunkFile and a
 * streamed whole-image upload share.
 */
export class ChunkingWindow {
  private buffer: Buffer;
  private filled = 0;
  private start = 0; // first byte of the window not in a chunk yet
  private base = 0; // image offset of buffer[0]
  private readonly params: ChunkingParameters;
  private readonly masks: ChunkMasks;

  /** `buffer`: the window's first buffer, of at least sizeFor(bytes) bytes (by default a new one). */
  constructor(bytes: number, params: ChunkingParameters = DEFAULT_CHUNKING, buffer?: Buffer) {
    this.params = params;
    this.masks = masksFor(params);
    const size = ChunkingWindow.sizeFor(bytes, params);
    if (buffer && buffer.length < size)
      throw new Error(`a window of ${bytes} bytes needs a buffer of ${size}`);
    this.buffer = buffer ?? Buffer.allocUnsafeSlow(size);
  }

  /** The size of a window asked to hold `bytes`: enough for every decision it must make. */
  static sizeFor(bytes: number, params: ChunkingParameters = DEFAULT_CHUNKING): number {
    return Math.max(bytes, params.maxLength * 4, ZERO_CHUNK_LENGTH * 4);
  }

  /** Image offset of the first byte not put into the window yet. */
  get streamOffset(): number {
    return this.base + this.filled;
  }

  /** Where the stream's next bytes go (empty when the window is full: cut and shift first). */
  free(): Buffer {
    return this.buffer.subarray(this.filled);
  }

  /** `bytes` more bytes of the stream were put at the start of `free()`. */
  fill(bytes: number): void {
    this.filled += bytes;
  }

  /** Cuts every chunk the window can decide (`final`: no bytes follow), in order. */
  cut(final: boolean, emit: (chunk: WindowChunk) => void): void {
    const { buffer, base } = this;
    this.start = chunkWindow(buffer, this.start, this.filled, final, base, this.params, this.masks, (cut) =>
      emit({
        offset: base + cut.start,
        length: cut.end - cut.start,
        zero: cut.zero,
        data: buffer.subarray(cut.start, cut.end),
      }),
    );
  }

  /** The bytes cut into chunks and not shifted out yet, and the image offset of the first. */
  decided(): { offset: number; data: Buffer } {
    return { offset: this.base, data: this.buffer.subarray(0, this.start) };
  }

  /**
   * Drops the decided bytes: the rest moves to the front of `into` (a buffer of this window's
   * size; by default the window's own), which becomes the window. Answers the buffer before.
   */
  shift(into: Buffer = this.buffer): Buffer {
    const before = this.buffer;
    before.copy(into, 0, this.start, this.filled);
    this.buffer = into;
    this.base += this.start;
    this.filled -= this.start;
    this.start = 0;
    return before;
  }
}
