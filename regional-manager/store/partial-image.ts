import { type FileHandle, open, rm } from "node:fs/promises";
import { FileHasher } from "../../common/image-format/file-hasher.ts";
import type { Manifest } from "../../common/image-format/manifest.ts";
import type { ChunkStore } from "./chunk-store.ts";
import type { ChunkCheck, ChunkVerifier } from "./chunk-verifier.ts";
import {
  alignedBuffer,
  DIRECT_ALIGNMENT,
  DirectWriter,
  openDirectReader,
  readInto,
  viewFor,
  wholeBuffer,
} from "./direct-io.ts";
import { asStoreError, StoreError } from "./errors.ts";
import {
  type CopySpan,
  copySpans,
  layoutOf,
  type ManifestLayout,
  RUN_BYTES,
  sameOffsetPositions,
  type WriteExtent,
} from "./image-layout.ts";
import { positionsHoldingTheirChunks } from "./partial-image-scan.ts";
import { PartialImageWriter } from "./partial-image-writer.ts";

/*
 * The image of a version being received, written in place: every chunk that arrives is
 * verified against its digest and written once, at its offsets in this file, which becomes
 * the assembled image when the version completes (renamed, never copied). Nothing here is
 * fsynced before completion: the file is the chunk store of its pending version, and what
 * survives a crash is decided when the store is opened again, by checking every chunk
 * position against its digest (`scan`). A half-written chunk never matches, so it never
 * looks whole; one that matches is kept and not fetched again. Completion fills the
 * positions still unwritten from chunks stored elsewhere, fsyncs once, and only then can the
 * version become available. The whole-image digest is hashed from the file as its prefix
 * becomes final (see common/image-format/file-hasher.ts), overlapping with the transfer.
 */

const MAX_PENDING_WRITE_BYTES = 64 << 20; // backpressure: a slow disk slows the sender down
/*
 * The dirty pages of a whole image would otherwise reach the disk only at the final fsync
 * (the kernel starts writing back at 10% of memory), after the transfer: flushing in the
 * background every so often makes the disk work during the transfer instead. This is not
 * what makes the image durable (the fsync at completion is); it only starts the work early.
 */
export const EARLY_FLUSH_BYTES = 64 << 20;

/** An available version of the same image, that a new version starts from: its file, open, and its path. */
export interface BaseImage {
  file: FileHandle;
  path: string;
  manifest: Manifest;
}

export class PartialImage {
  readonly path: string;
  readonly manifest: Manifest;
  readonly layout: ManifestLayout;
  readonly owner: string;
  readonly file: FileHandle;
  /** Writes into `file`, bypassing the page cache where it can (see direct-io.ts). */
  readonly writes: DirectWriter;
  private readonly chunks: ChunkStore;
  private readonly written: Uint8Array;
  /** Undefined when the version is verified by its manifest (PartialImage.open's hashWhole). */
  private readonly hasher: FileHasher | undefined;
  private frontier = 0; // chunks [0, frontier) are final in the file
  private queue: Promise<unknown> = Promise.resolve();
  private pendingBytes = 0;
  private writeError: unknown;
  private readonly spareBuffers: Buffer[] = [];
  private bytesSinceFlush = 0;
  private earlyFlush: Promise<void> | undefined;
  private baseCopy: Promise<void> = Promise.resolve();
  /** Checks chunks of runs off this thread (see chunk-verifier.ts); undefined: writers check them. */
  private readonly verifier: ChunkVerifier | undefined;
  /** Runs being checked by the verifier: written, or dropped, once checked. */
  private readonly checking = new Set<Promise<void>>();
  private stopping = false; // closing or discarding: the base copy stops early

  private constructor(
    path: string,
    manifest: Manifest,
    owner: string,
    file: FileHandle,
    writes: DirectWriter,
    chunks: ChunkStore,
    layout: ManifestLayout,
    hashWhole: boolean,
    verifier: ChunkVerifier | undefined,
  ) {
    this.path = path;
    this.manifest = manifest;
    this.owner = owner;
    this.file = file;
    this.writes = writes;
    this.chunks = chunks;
    this.layout = layout;
    this.written = new Uint8Array(manifest.chunks.length);
    this.hasher = hashWhole ? new FileHasher(path) : undefined;
    this.verifier = verifier;
  }

  /**
   * Opens (or creates, sparse, at the manifest's size) the partial image of a version. An
   * existing file is scanned: every position whose bytes match its digest counts as
   * received and is offered to the chunk store; everything else will be written again.
   */
  static async open(
    path: string,
    manifest: Manifest,
    owner: string,
    chunks: ChunkStore,
    base?: BaseImage,
    options: {
      /** Hash the whole file as it becomes final (false: the manifest is verified, see image-store). */
      hashWhole: boolean;
      /** The file holds every chunk already, each verified by the caller: not scanned. */
      received?: boolean;
      /** Checks the chunks of a pull's runs off the receiving thread. */
      verifier?: ChunkVerifier;
    } = { hashWhole: true },
  ): Promise<PartialImage> {
    let file: FileHandle;
    let existing = false;
    try {
      file = await open(path, "r+");
      existing = (await file.stat()).size === manifest.size;
      if (!existing) await file.truncate(0);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw asStoreError(error, path);
      file = await open(path, "w+").catch((e: unknown) => {
        throw asStoreError(e, path);
      });
    }
    try {
      if (!existing) await file.truncate(manifest.size);
    } catch (error) {
      await file.close();
      throw asStoreError(error, path);
    }
    // Hashed whole, the file is read back as it is written, and from the page cache that read
    // is cheap; verified by its manifest, it is not read here again.
    const writes = await DirectWriter.open(path, file, {
      direct: !options.hashWhole,
    });
    const image = new PartialImage(
      path,
      manifest,
      owner,
      file,
      writes,
      chunks,
      layoutOf(manifest),
      options.hashWhole,
      options.verifier,
    );
    if (existing && options.received) image.markAllWritten();
    else if (existing) await image.scan();
    image.advanceFrontier();
    if (!existing && base) {
      image.baseCopy = image.copyFromBase(base, sameOffsetPositions(manifest, image.layout, base.manifest));
    }
    return image;
  }

  /**
   * Copies the given positions from the image of a base version, where they sit at the same
   * offsets, in large sequential reads and writes: what an in-place update left unchanged is
   * written in one pass instead of chunk by chunk at completion. It runs while the new chunks
   * are fetched: with the base image on disk rather than in the page cache, the copy takes
   * about as long as fetching a 1% delta from a source that also reads from disk, and the two
   * used to run one after the other. The base is an available (verified) version, and the
   * whole-image digest is checked at the end. A base that cannot be read (deleted meanwhile)
   * ends the copy: completion fills the remaining positions from the chunk store. A failed
   * write is kept for the receivers and completion to report, like any other.
   *
   * The base is read past the page cache (0.3-0.4 CPU-s less kernel time per GiB here, the
   * same wall time), but the copy is written through it, unlike received runs: the changed
   * chunks cut it into extents of a few hundred KiB, and direct writes that allocate blocks
   * run one at a time on ext4, so copying 1 GiB with 2,621 changed 4 KiB blocks took
   * 1.5-1.8 s written direct against 1.0-1.3 s through the page cache.
   */
  private async copyFromBase(base: BaseImage, positions: readonly number[]): Promise<void> {
    const direct = await openDirectReader(base.path);
    try {
      await this.copyPositions(base.file, direct, positions);
    } catch {
      // See above: the positions not copied are filled at completion.
    } finally {
      await direct?.close().catch(() => {});
    }
  }

  private async copyPositions(
    base: FileHandle,
    direct: FileHandle | undefined,
    positions: readonly number[],
  ): Promise<void> {
    // Two reads in flight: the disk gets the next span's request while the last one is handed
    // to the write queue, instead of idling between them.
    // A read that fails (the base deleted meanwhile) counts as short: the copy ends there, and
    // the read still in flight is waited for, never left to reject unobserved.
    const reads: Array<{ span: CopySpan; buffer: Buffer; read: Promise<number> }> = [];
    const writeOldest = async (): Promise<boolean> => {
      const { span, buffer, read } = reads.shift() as (typeof reads)[number];
      if ((await read) < span.length || this.stopping) return false;
      this.enqueueWrites(buffer, span.extents, true, false);
      return true;
    };
    for (const span of copySpans(this.layout.offsets, positions)) {
      await this.waitForRoom();
      if (this.stopping || this.writeError !== undefined) break;
      const buffer = viewFor(this.takeBuffer(RUN_BYTES), span.start);
      const read = readInto(buffer, span.length, span.start, base, direct).catch(() => -1);
      reads.push({ span, buffer, read });
      if (reads.length === 2 && !(await writeOldest())) break;
    }
    while (reads.length > 0) await writeOldest();
  }

  /**
   * The positions of a chunk of the manifest; CHUNK_NOT_REFERENCED for a digest it does not
   * contain, or (given `length`) for data of another length.
   */
  positionsOf(digest: string, length?: number): readonly number[] {
    const positions = this.layout.positions.get(digest);
    if (
      !positions ||
      (length !== undefined && this.manifest.chunks[positions[0] as number]?.length !== length)
    ) {
      throw new StoreError(
        "CHUNK_NOT_REFERENCED",
        `chunk ${digest}${length === undefined ? "" : ` of ${length} bytes`} is not in the manifest`,
      );
    }
    return positions;
  }

  isWritten(position: number): boolean {
    return this.written[position] === 1;
  }

  /** Whether the chunk is written in this image (at one of its positions, at least). */
  holds(digest: string): boolean {
    return this.layout.positions.get(digest)?.some((position) => this.isWritten(position)) === true;
  }

  private markWritten(position: number): void {
    this.written[position] = 1;
    const chunk = this.manifest.chunks[position];
    if (!chunk) return;
    this.chunks.addImageLocation(chunk.digest, {
      file: this.file,
      offset: this.layout.offsets[position] as number,
      length: chunk.length,
      owner: this.owner,
    });
  }

  private markAllWritten(): void {
    for (const [position, chunk] of this.manifest.chunks.entries())
      if (!chunk.zero) this.markWritten(position);
  }

  /** Checks every data position of the file against its digest (after a restart). */
  private async scan(): Promise<void> {
    for (const position of await positionsHoldingTheirChunks(this.file, this.manifest, this.layout)) {
      this.markWritten(position);
    }
  }

  mustWait(): boolean {
    return this.pendingBytes > MAX_PENDING_WRITE_BYTES || this.writeError !== undefined;
  }

  /** Waits while too many bytes are queued for writing; reports a write failure. */
  async admit(): Promise<void> {
    this.throwWriteError();
    await this.waitForRoom();
    this.throwWriteError();
  }

  private async waitForRoom(): Promise<void> {
    while (this.pendingBytes > MAX_PENDING_WRITE_BYTES) {
      await this.queue;
      // Runs being checked count too: the queue may be empty while they are.
      if (this.pendingBytes > MAX_PENDING_WRITE_BYTES && this.checking.size > 0)
        await Promise.race(this.checking);
    }
  }

  /** Waits for the base copy, the checks of runs and every queued write; reports a failed write. */
  async drain(): Promise<void> {
    await this.baseCopy;
    await this.settleChecks();
    await this.queue;
    this.throwWriteError();
  }

  private async settleChecks(): Promise<void> {
    while (this.checking.size > 0) await Promise.all(this.checking);
  }

  get checksLater(): boolean {
    return this.verifier !== undefined;
  }

  /** See WritableImage.checkLater. */
  checkLater(
    buffer: Buffer,
    bytes: number,
    checks: readonly ChunkCheck[],
    then: (bad: number[]) => void,
  ): void {
    const verifier = this.verifier;
    if (!verifier) throw new Error("this image has no verifier");
    this.pendingBytes += bytes;
    const checked = verifier
      .verify(buffer, checks)
      .then((bad) => {
        this.pendingBytes -= bytes;
        then(bad);
      })
      .catch((error: unknown) => {
        this.writeError ??= asStoreError(error, `image ${this.owner}`);
      });
    this.checking.add(checked);
    void checked.then(() => this.checking.delete(checked));
  }

  private throwWriteError(): void {
    if (this.writeError !== undefined) {
      const error = this.writeError;
      this.writeError = undefined;
      throw error;
    }
  }

  /**
   * A page-aligned buffer with room for `minimum` bytes however it is placed on a page (see
   * viewFor), for a run or a span of a base copy.
   */
  takeBuffer(minimum: number): Buffer {
    const spare = this.spareBuffers.pop();
    return spare && spare.length >= minimum + DIRECT_ALIGNMENT
      ? spare
      : alignedBuffer(minimum + DIRECT_ALIGNMENT, { shared: this.verifier !== undefined });
  }

  /** A buffer from `takeBuffer` (or a view of one) no longer in use, for `takeBuffer` to hand out again. */
  giveBack(buffer: Buffer): void {
    if (this.spareBuffers.length < MAX_PENDING_WRITE_BYTES / RUN_BYTES + 2)
      this.spareBuffers.push(wholeBuffer(buffer));
  }

  /** Writes the extents of `buffer` after the writes queued before them. */
  enqueueWrite(buffer: Buffer, extents: readonly WriteExtent[], reusable: boolean): void {
    this.enqueueWrites(buffer, extents, reusable, true);
  }

  /**
   * Writes the extents of `buffer` after the writes queued before them; `direct`: past the
   * page cache where their alignment allows (see direct-io.ts).
   */
  private enqueueWrites(
    buffer: Buffer,
    extents: readonly WriteExtent[],
    reusable: boolean,
    direct: boolean,
  ): void {
    let used = 0;
    for (const extent of extents) used += extent.length;
    this.pendingBytes += used;
    const write = async () => {
      try {
        await Promise.all(
          extents.map(({ from, length, offset }) =>
            this.writes.writeRun(buffer, from, length, offset, direct),
          ),
        );
      } catch (error) {
        this.writeError ??= asStoreError(error, `image ${this.owner}`);
        return;
      } finally {
        this.pendingBytes -= used;
      }
      for (const extent of extents) for (const position of extent.positions) this.markWritten(position);
      this.bytesSinceFlush += used;
      if (this.bytesSinceFlush >= EARLY_FLUSH_BYTES && !this.earlyFlush) {
        this.bytesSinceFlush = 0;
        this.earlyFlush = this.file
          .datasync()
          .catch(() => {}) // the fsync at completion reports what matters
          .finally(() => {
            this.earlyFlush = undefined;
          });
      }
      // Reused: allocating 8 MiB per write kept the garbage collector busy.
      if (reusable) this.giveBack(buffer);
      this.advanceFrontier();
    };
    this.queue = this.queue.then(write, write);
  }

  /** Lets the hasher read every chunk up to the first one not yet final. */
  private advanceFrontier(): void {
    const { chunks } = this.manifest;
    let f = this.frontier;
    while (f < chunks.length && (chunks[f]?.zero || this.written[f] === 1)) f++;
    if (f === this.frontier) return;
    this.frontier = f;
    this.hasher?.advance(this.layout.offsets[f] as number);
  }

  /** Positions not written yet whose chunk is stored (in a pack or another image). */
  unwrittenPositions(): number[] {
    const out: number[] = [];
    for (const [i, chunk] of this.manifest.chunks.entries()) {
      if (!chunk.zero && this.written[i] !== 1) out.push(i);
    }
    return out;
  }

  /**
   * Fills every unwritten position from the chunk store, makes the file durable and returns
   * the SHA-256 of the whole file (undefined when it is not hashed whole). Throws
   * VERSION_INCOMPLETE if a chunk is not stored.
   */
  async complete(): Promise<string | undefined> {
    await this.drain();
    const positions = this.unwrittenPositions();
    const missing = positions.filter((p) => !this.chunks.has(this.manifest.chunks[p]?.digest as string));
    if (missing.length > 0) {
      throw new StoreError("VERSION_INCOMPLETE", `${missing.length} chunks of ${this.owner} are missing`);
    }
    const writer = new PartialImageWriter(this);
    const digests = positions.map((p) => this.manifest.chunks[p]?.digest as string);
    let i = 0;
    for await (const data of this.chunks.readMany(digests)) {
      await this.admit();
      writer.stage(positions[i++] as number, data);
    }
    await writer.flush();
    await this.earlyFlush;
    try {
      await this.file.sync();
    } catch (error) {
      throw asStoreError(error, `image ${this.owner}`);
    }
    return this.hasher?.digest(this.manifest.size);
  }

  /** Stops the hasher once the image is complete; the file stays open (it stores chunks). */
  async release(): Promise<void> {
    await this.baseCopy;
    await this.settleChecks();
    await this.queue;
    await this.earlyFlush;
    await this.hasher?.close();
    await this.writes.close();
  }

  /** Closes the file; it stays where it is, to be scanned when the store opens again. */
  async close(): Promise<void> {
    this.stopping = true;
    await this.release();
    await this.file.close().catch(() => {});
  }

  /** Forgets the chunks in this file and deletes it. */
  async discard(): Promise<void> {
    this.stopping = true;
    await this.baseCopy;
    await this.settleChecks();
    await this.queue;
    await this.earlyFlush;
    this.chunks.dropImageLocations(this.owner);
    await this.hasher?.close();
    await this.writes.close();
    await this.file.close().catch(() => {});
    await rm(this.path, { force: true });
  }
}
