import { type FileHandle, open, rm } from "node:fs/promises";
import type { ChunkStore } from "./chunk-store.ts";
import { isAllZero, sha256Hex, zeroChunkDigest } from "./digest.ts";
import { asStoreError, StoreError } from "./errors.ts";
import { FileHasher } from "./file-hasher.ts";
import { readFully } from "./files.ts";
import type { Manifest } from "./manifest.ts";

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
 * becomes final (see file-hasher.ts), overlapping with the transfer.
 */

const RUN_BYTES = 8 << 20; // one write per run of adjacent chunks, up to this many bytes
const MAX_PENDING_WRITE_BYTES = 64 << 20; // backpressure: a slow disk slows the sender down
const SCAN_READ_BYTES = 8 << 20;
/*
 * The dirty pages of a whole image would otherwise reach the disk only at the final fsync
 * (the kernel starts writing back at 10% of memory), after the transfer: flushing in the
 * background every so often makes the disk work during the transfer instead. This is not
 * what makes the image durable (the fsync at completion is); it only starts the work early.
 */
const EARLY_FLUSH_BYTES = 64 << 20;

/** Where each chunk of a manifest starts, and the positions of each stored (non-zero) digest. */
export interface ManifestLayout {
  offsets: Float64Array;
  positions: Map<string, number[]>;
}

export function layoutOf(manifest: Manifest): ManifestLayout {
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

/** Receives chunks for one request into runs of adjacent positions, written with one write each. */
export class PartialImageWriter {
  private readonly image: PartialImage;
  private run: Buffer | undefined;
  private runOffset = 0;
  private runUsed = 0;
  private runPositions: number[] = [];

  constructor(image: PartialImage) {
    this.image = image;
  }

  /**
   * Verifies a received chunk and writes it at every position of the version that holds it.
   * Throws CHUNK_DIGEST_MISMATCH (nothing written) for a corrupt chunk, CHUNK_NOT_REFERENCED
   * for one the version does not contain, and reports earlier write failures (DISK_FULL).
   */
  async receive(digest: string, data: Buffer): Promise<void> {
    await this.image.admit();
    this.accept(digest, data);
  }

  /**
   * `receive` without waiting: verifies and stages the chunk at once, copying it, so `data` may
   * be reused when this returns. The caller waits for `backpressure()` between reads.
   */
  accept(digest: string, data: Buffer): void {
    const positions = this.image.layout.positions.get(digest);
    if (!positions || this.image.manifest.chunks[positions[0] as number]?.length !== data.length) {
      throw new StoreError(
        "CHUNK_NOT_REFERENCED",
        `chunk ${digest} of ${data.length} bytes is not in the manifest`,
      );
    }
    if (sha256Hex(data) !== digest) {
      throw new StoreError("CHUNK_DIGEST_MISMATCH", `chunk ${digest} does not match its digest`);
    }
    for (const position of positions) {
      if (!this.image.isWritten(position)) this.stage(position, data);
    }
  }

  /** A promise to wait for while too much is queued for writing (or a write failed), else undefined. */
  backpressure(): Promise<void> | undefined {
    return this.image.mustWait() ? this.image.admit() : undefined;
  }

  /** Copies a chunk to its position (data already verified: it comes from the store). */
  stage(position: number, data: Buffer): void {
    const offset = this.image.layout.offsets[position] as number;
    if (
      this.run &&
      this.runUsed > 0 &&
      (this.runOffset + this.runUsed !== offset || this.runUsed + data.length > this.run.length)
    ) {
      this.flushRun();
    }
    if (!this.run) this.run = this.image.takeBuffer(Math.max(RUN_BYTES, data.length));
    if (this.runUsed === 0) this.runOffset = offset;
    data.copy(this.run, this.runUsed);
    this.runUsed += data.length;
    this.runPositions.push(position);
  }

  /** Hands the staged run to the image's write queue. */
  flushRun(): void {
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

  /** Writes everything staged and waits for it; reports a write failure. */
  async flush(): Promise<void> {
    this.flushRun();
    await this.image.drain();
  }
}

export class PartialImage {
  readonly path: string;
  readonly manifest: Manifest;
  readonly layout: ManifestLayout;
  readonly owner: string;
  readonly file: FileHandle;
  private readonly chunks: ChunkStore;
  private readonly written: Uint8Array;
  private readonly hasher: FileHasher;
  private frontier = 0; // chunks [0, frontier) are final in the file
  private queue: Promise<unknown> = Promise.resolve();
  private pendingBytes = 0;
  private writeError: unknown;
  private readonly spareBuffers: Buffer[] = [];
  private bytesSinceFlush = 0;
  private earlyFlush: Promise<void> | undefined;

  private constructor(
    path: string,
    manifest: Manifest,
    owner: string,
    file: FileHandle,
    chunks: ChunkStore,
    layout: ManifestLayout,
  ) {
    this.path = path;
    this.manifest = manifest;
    this.owner = owner;
    this.file = file;
    this.chunks = chunks;
    this.layout = layout;
    this.written = new Uint8Array(manifest.chunks.length);
    this.hasher = new FileHasher(path);
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
    base?: { file: FileHandle; manifest: Manifest },
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
    const image = new PartialImage(path, manifest, owner, file, chunks, layoutOf(manifest));
    if (existing) await image.scan();
    image.advanceFrontier();
    if (!existing && base) {
      try {
        await image.copyFromBase(base.file, sameOffsetPositions(manifest, image.layout, base.manifest));
      } catch (error) {
        await image.close();
        throw error;
      }
    }
    return image;
  }

  /**
   * Copies the given positions from the image of a base version, where they sit at the same
   * offsets, in large sequential reads and writes: what an in-place update left unchanged is
   * written before the first new chunk arrives, instead of chunk by chunk at completion. The
   * base is an available (verified) version, and the whole-image digest is checked at the end.
   */
  private async copyFromBase(base: FileHandle, positions: readonly number[]): Promise<void> {
    let i = 0;
    while (i < positions.length) {
      const first = positions[i] as number;
      const start = this.layout.offsets[first] as number;
      let end = i + 1;
      while (
        end < positions.length &&
        positions[end] === (positions[end - 1] as number) + 1 &&
        (this.layout.offsets[(positions[end] as number) + 1] as number) - start <= RUN_BYTES
      ) {
        end++;
      }
      const length = (this.layout.offsets[(positions[end - 1] as number) + 1] as number) - start;
      await this.admit();
      const buffer = this.takeBuffer(Math.max(RUN_BYTES, length));
      if ((await readFully(base, buffer, length, start)) < length)
        throw new StoreError("VERSION_INCOMPLETE", `the base image of ${this.owner} is short`);
      this.enqueueWrite(buffer, length, start, positions.slice(i, end), true);
      i = end;
    }
    await this.drain();
  }

  isWritten(position: number): boolean {
    return this.written[position] === 1;
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

  /** Checks every data position of the file against its digest (after a restart). */
  private async scan(): Promise<void> {
    const { chunks } = this.manifest;
    const buffer = Buffer.allocUnsafe(SCAN_READ_BYTES + 2 * 256 * 1024);
    let i = 0;
    while (i < chunks.length) {
      if (chunks[i]?.zero) {
        i++;
        continue;
      }
      // One read for a run of data chunks.
      const start = this.layout.offsets[i] as number;
      let end = i;
      while (
        end < chunks.length &&
        !chunks[end]?.zero &&
        (this.layout.offsets[end + 1] as number) - start <= buffer.length &&
        (end === i || (this.layout.offsets[end] as number) - start < SCAN_READ_BYTES)
      ) {
        end++;
      }
      const length = (this.layout.offsets[end] as number) - start;
      await readFully(this.file, buffer, length, start);
      for (let p = i; p < end; p++) {
        const chunk = chunks[p] as { digest: string; length: number };
        const from = (this.layout.offsets[p] as number) - start;
        const data = buffer.subarray(from, from + chunk.length);
        // Never-written positions are holes: a memcmp rules them out without hashing.
        const matches = isAllZero(data)
          ? chunk.digest === zeroChunkDigest(chunk.length)
          : sha256Hex(data) === chunk.digest;
        if (matches) this.markWritten(p);
      }
      i = end;
    }
  }

  mustWait(): boolean {
    return this.pendingBytes > MAX_PENDING_WRITE_BYTES || this.writeError !== undefined;
  }

  /** Waits while too many bytes are queued for writing; reports a write failure. */
  async admit(): Promise<void> {
    this.throwWriteError();
    while (this.pendingBytes > MAX_PENDING_WRITE_BYTES) await this.queue;
    this.throwWriteError();
  }

  async drain(): Promise<void> {
    await this.queue;
    this.throwWriteError();
  }

  private throwWriteError(): void {
    if (this.writeError !== undefined) {
      const error = this.writeError;
      this.writeError = undefined;
      throw error;
    }
  }

  takeBuffer(minimum: number): Buffer {
    const spare = this.spareBuffers.pop();
    return spare && spare.length >= minimum ? spare : Buffer.allocUnsafe(minimum);
  }

  /** Writes `used` bytes of `buffer` at `offset` after the writes queued before it. */
  enqueueWrite(buffer: Buffer, used: number, offset: number, positions: number[], reusable: boolean): void {
    this.pendingBytes += used;
    const write = async () => {
      try {
        let done = 0;
        while (done < used) {
          done += (await this.file.write(buffer, done, used - done, offset + done)).bytesWritten;
        }
      } catch (error) {
        this.writeError ??= asStoreError(error, `image ${this.owner}`);
        return;
      } finally {
        this.pendingBytes -= used;
      }
      for (const position of positions) this.markWritten(position);
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
      if (reusable && this.spareBuffers.length < MAX_PENDING_WRITE_BYTES / RUN_BYTES + 2) {
        this.spareBuffers.push(buffer);
      }
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
    this.hasher.advance(this.layout.offsets[f] as number);
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
   * the SHA-256 of the whole file. Throws VERSION_INCOMPLETE if a chunk is not stored.
   */
  async complete(): Promise<string> {
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
    return this.hasher.digest(this.manifest.size);
  }

  /** Stops the hasher once the image is complete; the file stays open (it stores chunks). */
  async release(): Promise<void> {
    await this.queue;
    await this.earlyFlush;
    await this.hasher.close();
  }

  /** Closes the file; it stays where it is, to be scanned when the store opens again. */
  async close(): Promise<void> {
    await this.release();
    await this.file.close().catch(() => {});
  }

  /** Forgets the chunks in this file and deletes it. */
  async discard(): Promise<void> {
    await this.queue;
    await this.earlyFlush;
    this.chunks.dropImageLocations(this.owner);
    await this.hasher.close();
    await this.file.close().catch(() => {});
    await rm(this.path, { force: true });
  }
}
