import type { Manifest } from "../../common/image-format/manifest.ts";
import type { ChunkCheck } from "./chunk-verifier.ts";
import { DIRECT_ALIGNMENT, viewFor, wholeBuffer } from "./direct-io.ts";
import { StoreError } from "./errors.ts";
import { type ManifestLayout, RUN_BYTES, type WriteExtent } from "./image-layout.ts";
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
  /** Writes the extents of `buffer` after the writes queued before; `reusable`: give it back after. */
  enqueueWrite(buffer: Buffer, extents: readonly WriteExtent[], reusable: boolean): void;
  /** Whether chunks received in a sequence are checked off this thread (`checkLater`). */
  readonly checksLater: boolean;
  /**
   * Checks chunks of `buffer` (`bytes` long) off this thread, then calls `then` with the
   * indexes of those that do not match. Counted as queued for writing until then.
   */
  checkLater(
    buffer: Buffer,
    bytes: number,
    checks: readonly ChunkCheck[],
    then: (bad: number[]) => void,
  ): void;
}

/** What a chunk received unchecked is staged with: its check, its position, and whom to tell once it passed. */
interface StagedCheck extends ChunkCheck {
  position: number;
  arrived: ChunkArrived;
}

/** Hears of a chunk that passed its check: its digest, length and first position in the version. */
export type ChunkArrived = (digest: string, length: number, position: number) => void;

/** Receives chunks for one request into runs of adjacent positions, written with one write each. */
export class PartialImageWriter {
  private readonly image: WritableImage;
  private run: Buffer | undefined;
  private runOffset = 0;
  private runUsed = 0;
  private runPositions: number[] = [];
  /** Chunks of the run not checked yet: the run is written once they are. */
  private runChecks: StagedCheck[] = [];
  /** Checks of earlier runs under way, and the first chunk they found corrupt. */
  private readonly checking = new Set<Promise<void>>();
  private corrupt: StoreError | undefined;
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
   * straight into this writer's runs: see ChunkSequence. `checkLater`: its chunks are checked
   * off this thread where the image can, and a corrupt one is reported by `backpressure` and
   * `checked` rather than thrown as it arrives.
   */
  sequence(
    digests: readonly string[],
    onChunk: ChunkArrived,
    options: { checkLater?: boolean } = {},
  ): ChunkSequence {
    return new ChunkSequence(
      this,
      this.image,
      digests,
      onChunk,
      options.checkLater === true && this.image.checksLater,
    );
  }

  /**
   * A promise to wait for while too much is queued for writing (or a write failed), else
   * undefined; a rejected one (CHUNK_DIGEST_MISMATCH) once a chunk received was found corrupt.
   */
  backpressure(): Promise<void> | undefined {
    if (this.corrupt) return Promise.reject(this.corrupt);
    return this.image.mustWait() ? this.image.admit() : undefined;
  }

  /** Waits for the checks of the chunks received so far; CHUNK_DIGEST_MISMATCH if one failed. */
  async checked(): Promise<void> {
    while (this.checking.size > 0) await Promise.all(this.checking);
    if (this.corrupt) throw this.corrupt;
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

  /**
   * The first `length` bytes of the tail are the chunk of `position`, not checked yet: staged,
   * to be written once it is (see checkLater), and `arrived` called then.
   */
  commitUnchecked(position: number, length: number, digest: string, arrived: StagedCheck["arrived"]): void {
    this.runChecks.push({ from: this.runUsed, length, digest, position, arrived });
    this.commitTail(position, length);
  }

  /** Hands the staged run to the image's write queue, once its unchecked chunks are checked. */
  private flushRun(): void {
    const run = this.run;
    if (!run || this.runUsed === 0) return;
    const staged: StagedRun = {
      buffer: run,
      used: this.runUsed,
      offset: this.runOffset,
      positions: this.runPositions,
    };
    const checks = this.runChecks;
    this.runUsed = 0;
    this.runPositions = [];
    this.runChecks = [];
    if (checks.length === 0) {
      if (this.write(staged)) this.run = undefined;
      return;
    }
    // The buffer stays with its bytes until they are checked; the next run takes another.
    this.run = undefined;
    const checking = new Promise<void>((resolve) =>
      this.image.checkLater(run, staged.used, checks, (bad) => {
        try {
          this.afterChecks(staged, checks, bad);
        } finally {
          resolve();
        }
      }),
    );
    this.checking.add(checking);
    void checking.then(() => this.checking.delete(checking));
  }

  /** Writes the chunks of a run that passed their checks; the first that failed is reported. */
  private afterChecks(staged: StagedRun, checks: readonly StagedCheck[], bad: readonly number[]): void {
    const failed = new Set<number>();
    for (const i of bad) failed.add((checks[i] as StagedCheck).position);
    for (const check of checks)
      if (!failed.has(check.position)) check.arrived(check.digest, check.length, check.position);
    if (failed.size === 0) {
      if (!this.write(staged)) this.image.giveBack(staged.buffer);
      return;
    }
    const first = checks[bad[0] as number] as StagedCheck;
    this.corrupt ??= new StoreError(
      "CHUNK_DIGEST_MISMATCH",
      `chunk ${first.digest} does not match its digest`,
    );
    // The run less its corrupt chunks, as extents of adjacent chunks.
    const { offsets } = this.image.layout;
    const extents: WriteExtent[] = [];
    for (const position of staged.positions) {
      if (failed.has(position)) continue;
      const offset = offsets[position] as number;
      const length = (offsets[position + 1] as number) - offset;
      const last = extents[extents.length - 1];
      if (last && last.offset + last.length === offset) {
        last.length += length;
        last.positions.push(position);
      } else {
        extents.push({ from: offset - staged.offset, length, offset, positions: [position] });
      }
    }
    if (extents.length > 0) this.image.enqueueWrite(staged.buffer, extents, true);
    else this.image.giveBack(staged.buffer);
  }

  /** Queues the writing of a run; answers whether its buffer went with it (else it may be reused). */
  private write({ buffer, used, offset, positions }: StagedRun): boolean {
    if (used < buffer.length / 4) {
      // A short run (scattered chunks of a delta): its bytes leave in a buffer of their own
      // and the run buffer is reused, instead of holding 8 MiB per queued write.
      const exact = Buffer.allocUnsafe(used);
      buffer.copy(exact, 0, 0, used);
      this.image.enqueueWrite(exact, [{ from: 0, length: used, offset, positions }], false);
      return false;
    }
    this.image.enqueueWrite(buffer, [{ from: 0, length: used, offset, positions }], true);
    return true;
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

/** A run handed over: its buffer, the bytes used, their image offset and the chunks' positions. */
interface StagedRun {
  buffer: Buffer;
  used: number;
  offset: number;
  positions: number[];
}

const NOTHING = Buffer.alloc(0);

/**
 * The data of a list of chunks arriving as one byte stream, received where it will be
 * written: `region()` is the free space of the writer's run at the next chunk's offset, as
 * long as the chunks that follow lie next to each other in the image, and the socket reads
 * straight into it. Once a chunk is complete it is staged where it lies and checked there:
 * by the image's verifier thread when it has one (see chunk-verifier.ts), which the run's
 * write waits for, else at once. A corrupt chunk is never written: checked at once it throws
 * CHUNK_DIGEST_MISMATCH, checked later the writer's backpressure and `checked` report it.
 * Chunks found at other positions too are checked at once and copied there. `onChunk` hears
 * of each chunk once it passed.
 */
export class ChunkSequence {
  private readonly writer: PartialImageWriter;
  private readonly digests: readonly string[];
  private readonly positions: Array<readonly number[]>;
  private readonly offsets: Float64Array;
  private readonly lengths: Uint32Array;
  private readonly onChunk: ChunkArrived;
  private readonly checksLater: boolean;
  private next = 0; // the chunk being received
  private fill = 0; // its bytes received so far, at the start of the writer's tail

  constructor(
    writer: PartialImageWriter,
    image: WritableImage,
    digests: readonly string[],
    onChunk: ChunkArrived,
    checkLater: boolean,
  ) {
    this.writer = writer;
    this.digests = digests;
    this.onChunk = onChunk;
    this.checksLater = checkLater;
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
      const digest = this.digests[k] as string;
      const positions = this.positions[k] as readonly number[];
      if (positions.length === 1 && this.checksLater) {
        this.writer.commitUnchecked(positions[0] as number, length, digest, this.onChunk);
      } else {
        // Copied to other positions at once, so checked at once.
        const data = tail.subarray(0, length);
        verifyChunk(digest, data);
        this.writer.commitTail(positions[0] as number, length);
        if (positions.length > 1) this.writer.copyToOthers(positions, data);
        this.onChunk(digest, length, positions[0] as number);
      }
      tail = tail.subarray(length);
      this.next++;
      this.fill = 0;
    }
  }
}
