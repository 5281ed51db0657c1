import type { Manifest } from "../../common/image-format/manifest.ts";
import { DIRECT_ALIGNMENT, viewFor, wholeBuffer } from "./direct-io.ts";
import { type ManifestLayout, RUN_BYTES } from "./image-layout.ts";
import { verifyChunk } from "./verify-chunk.ts";

/*
 * The receiving side of a partial image (see partial-image.ts): a writer per request gathers
 * verified chunks into runs of adjacent positions, and a chunk sequence receives a pull's
 * body straight into those runs.
 */

/**
 * What a writer needs of the image it writes into (PartialImage): declared here so that the
 * image, which makes writers of its own at completion, and its writers do not import each other.
 */
export interface WritableImage {
  readonly manifest: Manifest;
  readonly layout: ManifestLayout;
  positionsOf(digest: string, length?: number): readonly number[];
  isWritten(position: number): boolean;
  mustWait(): boolean;
  admit(): Promise<void>;
  drain(): Promise<void>;
  takeBuffer(minimum: number): Buffer;
  giveBack(buffer: Buffer): void;
  enqueueWrite(buffer: Buffer, used: number, offset: number, positions: number[], reusable: boolean): void;
}

/** Receives chunks for one request into runs of adjacent positions, written with one write each. */
export class PartialImageWriter {
  private readonly image: WritableImage;
  private run: Buffer | undefined;
  private runOffset = 0;
  private runUsed = 0;
  private runPositions: number[] = [];
  /*
   * A chunk found at more than one position is written at its first one here and copied to
   * the others by a writer of their own: interleaved with this one's, they would cut both
   * runs into one write per chunk.
   */
  private copies: PartialImageWriter | undefined;

  constructor(image: WritableImage) {
    this.image = image;
  }

  /**
   * Verifies a received chunk and writes it at every position of the version that holds it.
   * Throws CHUNK_DIGEST_MISMATCH (nothing written) for a corrupt chunk, CHUNK_NOT_REFERENCED
   * for one the version does not contain, and reports earlier write failures (DISK_FULL).
   * Answers whether the chunk was new to this image.
   */
  async receive(digest: string, data: Buffer): Promise<boolean> {
    await this.image.admit();
    return this.accept(digest, data);
  }

  /**
   * `receive` without waiting: for a caller that awaits `backpressure()` itself, so a stream
   * of records costs no promise per chunk.
   */
  accept(digest: string, data: Buffer): boolean {
    const positions = this.image.positionsOf(digest, data.length);
    verifyChunk(digest, data);
    const first = positions[0] as number;
    const fresh = !this.image.isWritten(first);
    if (fresh) this.stage(first, data);
    this.copyToOthers(positions, data);
    return fresh;
  }

  /** Writes verified data at the positions after the first (the ones not written yet; see `copies`). */
  copyToOthers(positions: readonly number[], data: Buffer): void {
    for (let i = 1; i < positions.length; i++) {
      const position = positions[i] as number;
      if (this.image.isWritten(position)) continue;
      this.copies ??= new PartialImageWriter(this.image);
      this.copies.stage(position, data);
    }
  }

  /**
   * Receives the data of `digests`, concatenated in that order (a pull's response body),
   * straight into this writer's runs: see ChunkSequence.
   */
  sequence(digests: readonly string[], onChunk: (length: number) => void): ChunkSequence {
    return new ChunkSequence(this, this.image, digests, onChunk);
  }

  /** A promise to wait for while too much is queued for writing (or a write failed), else undefined. */
  backpressure(): Promise<void> | undefined {
    return this.image.mustWait() ? this.image.admit() : undefined;
  }

  /** Copies a chunk to its position (data already verified: it comes from the store). */
  stage(position: number, data: Buffer): void {
    data.copy(this.tail(this.image.layout.offsets[position] as number, data.length));
    this.commitTail(position, data.length);
  }

  /**
   * The free part of the run, after making sure that `length` bytes for image offset `offset`
   * can go at its start: the run is written first if they would not extend it.
   */
  tail(offset: number, length: number): Buffer {
    if (
      this.run &&
      this.runUsed > 0 &&
      (this.runOffset + this.runUsed !== offset || this.runUsed + length > this.run.length)
    ) {
      this.flushRun();
    }
    if (this.runUsed === 0) {
      // A run starts where its first byte's offset puts it on a page, so that its page-aligned
      // bytes can be written without going through the page cache (see direct-io.ts).
      let whole = this.run && wholeBuffer(this.run);
      if (!whole || whole.length - DIRECT_ALIGNMENT < length) {
        if (whole) this.image.giveBack(whole);
        whole = this.image.takeBuffer(Math.max(RUN_BYTES, length));
      }
      // At most RUN_BYTES: the buffer's slack for placing the run is not a short last piece
      // written through the page cache.
      this.run = viewFor(whole, offset).subarray(0, Math.max(RUN_BYTES, length));
      this.runOffset = offset;
    }
    return (this.run as Buffer).subarray(this.runUsed);
  }

  /** The first `length` bytes of the tail are the verified chunk of `position`: stage them. */
  commitTail(position: number, length: number): void {
    this.runUsed += length;
    this.runPositions.push(position);
  }

  /** Hands the staged run to the image's write queue. */
  private flushRun(): void {
    if (!this.run || this.runUsed === 0) return;
    if (this.runUsed < this.run.length / 4) {
      // A short run (scattered chunks of a delta): its bytes leave in a buffer of their own
      // and the run buffer is reused, instead of holding 8 MiB per queued write.
      const exact = Buffer.allocUnsafe(this.runUsed);
      this.run.copy(exact, 0, 0, this.runUsed);
      this.image.enqueueWrite(exact, this.runUsed, this.runOffset, this.runPositions, false);
    } else {
      this.image.enqueueWrite(this.run, this.runUsed, this.runOffset, this.runPositions, true);
      this.run = undefined;
    }
    this.runUsed = 0;
    this.runPositions = [];
  }

  /**
   * Hands everything staged to the image's write queue, without waiting for the writes, and
   * gives the run buffer back for the next writer: dropped with a writer per request, 8 MiB
   * per 32 MiB pulled had to be allocated again, and V8 answers that much external memory
   * with a full garbage collection every 64 MiB or so.
   */
  release(): void {
    this.handOver();
    this.copies?.handOver();
  }

  private handOver(): void {
    this.flushRun();
    if (this.run) this.image.giveBack(this.run);
    this.run = undefined;
  }

  /** Writes everything staged and waits for it; reports a write failure. */
  async flush(): Promise<void> {
    this.release();
    await this.image.drain();
  }
}

const NOTHING = Buffer.alloc(0);

/**
 * The data of a list of chunks arriving as one byte stream, received where it will be
 * written: `region()` is the free space of the writer's run at the next chunk's offset, as
 * long as the chunks that follow lie next to each other in the image, and the socket reads
 * straight into it. Once a chunk is complete it is verified where it lies, and only then
 * staged; a corrupt chunk throws CHUNK_DIGEST_MISMATCH and is never written. Chunks found at
 * other positions too are copied there.
 */
export class ChunkSequence {
  private readonly writer: PartialImageWriter;
  private readonly digests: readonly string[];
  private readonly positions: Array<readonly number[]>;
  private readonly offsets: Float64Array;
  private readonly lengths: Uint32Array;
  private readonly onChunk: (length: number) => void;
  private next = 0; // the chunk being received
  private fill = 0; // its bytes received so far, at the start of the writer's tail

  constructor(
    writer: PartialImageWriter,
    image: WritableImage,
    digests: readonly string[],
    onChunk: (length: number) => void,
  ) {
    this.writer = writer;
    this.digests = digests;
    this.onChunk = onChunk;
    this.positions = digests.map((digest) => image.positionsOf(digest));
    this.offsets = new Float64Array(digests.length);
    this.lengths = new Uint32Array(digests.length);
    for (const [i, positions] of this.positions.entries()) {
      const first = positions[0] as number;
      this.offsets[i] = image.layout.offsets[first] as number;
      this.lengths[i] = image.manifest.chunks[first]?.length as number;
    }
  }

  /** Bytes of all the chunks. */
  get totalBytes(): number {
    return this.lengths.reduce((sum, length) => sum + length, 0);
  }

  /** True once every chunk has been received and verified. */
  get done(): boolean {
    return this.next === this.digests.length;
  }

  /** Where the next bytes go: empty once every chunk is in. Stays the same until `advance`. */
  region(): Buffer {
    const k = this.next;
    if (k === this.digests.length) return NOTHING;
    const length = this.lengths[k] as number;
    // A chunk partly received lies at the start of the tail, so this never moves the run.
    const tail = this.writer.tail(this.offsets[k] as number, length);
    let end = length;
    for (let j = k + 1; j < this.digests.length; j++) {
      const adjacent = this.offsets[j] === (this.offsets[j - 1] as number) + (this.lengths[j - 1] as number);
      if (!adjacent || end + (this.lengths[j] as number) > tail.length) break;
      end += this.lengths[j] as number;
    }
    return tail.subarray(this.fill, end);
  }

  /** `bytes` bytes were put at the start of the last `region()`. */
  advance(bytes: number): void {
    let left = bytes;
    let tail = left > 0 ? this.writer.tail(this.offsets[this.next] as number, 0) : NOTHING;
    while (left > 0) {
      const k = this.next;
      const length = this.lengths[k] as number;
      const take = Math.min(length - this.fill, left);
      this.fill += take;
      left -= take;
      if (this.fill < length) break;
      const data = tail.subarray(0, length);
      const digest = this.digests[k] as string;
      verifyChunk(digest, data);
      const positions = this.positions[k] as readonly number[];
      this.writer.commitTail(positions[0] as number, length);
      if (positions.length > 1) this.writer.copyToOthers(positions, data);
      tail = tail.subarray(length);
      this.next++;
      this.fill = 0;
      this.onChunk(length);
    }
  }
}
