// The whole image in one request (PUT .../image): what curl or a client generated from the
// manager's OpenAPI document sends, and what uploadImage sends when the manager holds little
// of the image (a first upload). The body is cut into chunks as it arrives and written once
// into a file that becomes the version's image; another thread reads that file as it becomes
// final and hashes each data chunk and the whole image (see common/image-format/file-hasher.ts). Nothing is
// written twice nor hashed twice: the manager does the cutting and hashing the client would
// otherwise have done, and the client only sends. With x-image-digest, a body whose sha256
// differs is refused and nothing is kept.
import { randomUUID } from "node:crypto";
import { type FileHandle, mkdir, open, rm } from "node:fs/promises";
import { join } from "node:path";
import { writeFully } from "../../common/files.ts";
import { ChunkingWindow } from "../../common/image-format/chunking.ts";
import { FileHasher } from "../../common/image-format/file-hasher.ts";
import { ManifestError } from "../../common/image-format/manifest.ts";
import { StoreError } from "../store/errors.ts";
import type { ImageFormat, ImageStore, VersionRecord } from "../store/image-store.ts";
import { checkImageSize } from "../store/manifest-limits.ts";
import { EARLY_FLUSH_BYTES, WRITE_PIECE_BYTES } from "../store/partial-image.ts";

/** `sha256:<hex>` or `<hex>` → the bare lowercase hex the store uses; undefined when absent. */
export function parseImageDigestHeader(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const hex = value
    .trim()
    .replace(/^sha256:/i, "")
    .toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) {
    throw new ManifestError("x-image-digest", "must be sha256:<64 hex digits>");
  }
  return hex;
}

export interface WholeImageUpload {
  imageId: string;
  version: number;
  /** The uploader's project (from its token): what it may reuse is scoped to it. */
  project: string;
  body: AsyncIterable<Uint8Array>;
  format?: ImageFormat;
  /** The body is refused (IMAGE_TOO_LARGE) as soon as it passes this many bytes. */
  maxBytes: number;
  /** Bare hex sha256 the client declared; the image must match it. */
  expectedDigest?: string;
}

/** Bytes [from, to) of a window, to be written. */
interface WriteRun {
  from: number;
  to: number;
}

/** Windows in flight: filled from the body while earlier ones are written. */
const WINDOWS = 6;
const WINDOW_BYTES = 8 << 20;

export async function receiveWholeImage(store: ImageStore, upload: WholeImageUpload): Promise<VersionRecord> {
  const spoolDir = join(store.dataDir, "uploads");
  await mkdir(spoolDir, { recursive: true });
  const spool = join(spoolDir, `${upload.imageId}-${upload.version}-${randomUUID()}.part`);
  const file = await open(spool, "w+");
  // The whole image and each data chunk are hashed on the hasher's thread, from the file:
  // this one receives, cuts and writes (one core each, as measured, instead of one for all).
  const hasher = new FileHasher(spool, { chunks: true });
  const writer = new SpoolWriter(file, hasher);
  try {
    const window = new ChunkingWindow(WINDOW_BYTES);
    const spare: Buffer[] = [];
    const cut = async (final: boolean) => {
      // The data chunks of the window, as runs of bytes to write: zero chunks stay holes, as
      // in an image assembled from chunks. A data chunk's digest comes from the hasher, which
      // reads it anyway.
      const base = window.decided().offset;
      const runs: WriteRun[] = [];
      window.cut(final, (chunk) => {
        hasher.addChunk(chunk.length, chunk.zero);
        if (chunk.zero) return;
        const from = chunk.offset - base;
        const last = runs[runs.length - 1];
        if (last && last.to === from) last.to += chunk.length;
        else runs.push({ from, to: from + chunk.length });
      });
      const decided = window.decided();
      const next = spare.pop() ?? Buffer.allocUnsafeSlow(ChunkingWindow.sizeFor(WINDOW_BYTES));
      const written = window.shift(next);
      await writer.write(decided, runs, () => spare.push(written), WINDOWS);
    };
    let received = 0;
    for await (const piece of upload.body) {
      received += piece.byteLength;
      checkImageSize(received, { maxImageBytes: upload.maxBytes });
      const input = Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
      for (let at = 0; at < input.length; ) {
        const free = window.free();
        const take = Math.min(free.length, input.length - at);
        input.copy(free, 0, at, at + take);
        window.fill(take);
        at += take;
        if (take === free.length) await cut(false);
      }
    }
    await cut(true);
    const size = window.streamOffset;
    await writer.finish(size);
    const manifest = await hasher.manifest(size);
    if (upload.expectedDigest && manifest.digest !== upload.expectedDigest) {
      throw new StoreError(
        "IMAGE_DIGEST_MISMATCH",
        `the image received has sha256 ${manifest.digest}, not ${upload.expectedDigest} (x-image-digest); nothing was kept`,
      );
    }
    await file.close();
    return await store.adoptVersion(upload.imageId, upload.version, manifest, spool, {
      ...(upload.format ? { format: upload.format } : {}),
      project: upload.project,
    });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOSPC") {
      throw new StoreError("DISK_FULL", "no space left to receive the image", { cause: error });
    }
    throw error;
  } finally {
    await writer.settle();
    await hasher.close();
    await file.close().catch(() => {});
    await rm(spool, { force: true });
  }
}

/**
 * Writes the decided bytes of each window to the spool file, a window's writes after the
 * previous window's, and tells the hasher how far the file is final. At most `inFlight`
 * windows wait for their writes: a slow disk slows the sender down.
 */
class SpoolWriter {
  private readonly file: FileHandle;
  private readonly hasher: FileHasher;
  private queue: Promise<void> = Promise.resolve();
  private waiting = 0;
  private failure: unknown;
  private sinceFlush = 0;
  private flushing: Promise<void> | undefined;

  constructor(file: FileHandle, hasher: FileHasher) {
    this.file = file;
    this.hasher = hasher;
  }

  /**
   * Queues the writes of `runs` of `decided` (its data chunks, at offsets relative to it; the
   * last one ends where the decided bytes do, or a zero run follows), then calls `done` (its
   * buffer is free again); waits while more than `inFlight` windows are queued.
   */
  async write(
    decided: { offset: number; data: Buffer },
    runs: readonly WriteRun[],
    done: () => void,
    inFlight: number,
  ): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    // The hasher may read as far as the last data written: a zero run after it is a hole the
    // file does not reach yet (a later write, or the final size, makes it readable).
    const last = runs[runs.length - 1];
    const end = last ? decided.offset + last.to : 0;
    const bytes = decided.data.length;
    this.waiting++;
    this.queue = this.queue.then(async () => {
      try {
        if (this.failure !== undefined) return;
        const pieces: Array<Promise<void>> = [];
        for (const run of runs) {
          for (let from = run.from; from < run.to; from += WRITE_PIECE_BYTES) {
            const length = Math.min(WRITE_PIECE_BYTES, run.to - from);
            pieces.push(writeFully(this.file, decided.data, from, length, decided.offset + from));
          }
        }
        await Promise.all(pieces);
        this.hasher.advance(end);
        this.sinceFlush += bytes;
        if (this.sinceFlush >= EARLY_FLUSH_BYTES && !this.flushing) {
          // Starts the disk's work during the transfer (see partial-image.ts), beside the
          // writes rather than before the next: durability is the completion's fsync.
          this.sinceFlush = 0;
          this.flushing = this.file
            .datasync()
            .catch(() => {})
            .finally(() => {
              this.flushing = undefined;
            });
        }
      } catch (error) {
        this.failure ??= error;
      } finally {
        this.waiting--;
        done();
      }
    });
    while (this.waiting > inFlight) await this.queue;
  }

  /** Waits for every write and sets the file's size (a trailing zero run is a hole). */
  async finish(size: number): Promise<void> {
    await this.queue;
    await this.flushing;
    if (this.failure !== undefined) throw this.failure;
    await this.file.truncate(size);
    this.hasher.advance(size);
  }

  /** Waits for the writes queued, whatever became of them. */
  async settle(): Promise<void> {
    await this.queue;
    await this.flushing;
  }
}
