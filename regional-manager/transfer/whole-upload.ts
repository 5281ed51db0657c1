// The whole image in one request (PUT .../image): what curl or a client generated from the
// manager's OpenAPI document sends, and what uploadImage sends when the manager holds little
// of the image (a first upload). The body is cut into chunks as it arrives, in windows of
// shared memory, and each window's bytes go two ways at once: written once into a file that
// becomes the version's image, and hashed where they are by another thread, each data chunk
// and the whole image (see common/image-format/file-hasher.ts). Nothing is written twice,
// hashed twice or read back, so the file is written past the page cache (direct-io.ts): the
// manager does the cutting and hashing the client would otherwise have done, and the client
// only sends. With x-image-digest, a body whose sha256 differs is refused and nothing is kept.
import { randomUUID } from "node:crypto";
import { type FileHandle, mkdir, open, rm } from "node:fs/promises";
import { join } from "node:path";
import { ChunkingWindow, DEFAULT_CHUNKING } from "../../common/image-format/chunking.ts";
import { FileHasher } from "../../common/image-format/file-hasher.ts";
import { ManifestError } from "../../common/image-format/manifest.ts";
import { alignedBuffer, DIRECT_ALIGNMENT, DirectWriter, viewFor } from "../store/direct-io.ts";
import { StoreError } from "../store/errors.ts";
import type { ImageFormat, ImageStore, VersionRecord } from "../store/image-store.ts";
import { checkImageSize } from "../store/manifest-limits.ts";
import { EARLY_FLUSH_BYTES } from "../store/partial-image.ts";
import type { BodySource } from "./body-source.ts";

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
  /** The image's bytes: poured straight into the windows cut into chunks. */
  body: BodySource;
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

/** Windows in flight: filled from the body while earlier ones are written and hashed. */
const WINDOWS = 6;
const WINDOW_BYTES = 8 << 20;
const WINDOW_BUFFER_BYTES = ChunkingWindow.sizeFor(WINDOW_BYTES);

/*
 * A window's memory: shared, for the hasher's thread to read, page-aligned and a page longer
 * than the window, so that each window's bytes can lie at their file offset's distance from a
 * page boundary (viewFor) and be written direct.
 */
const windowMemory = () => alignedBuffer(WINDOW_BUFFER_BYTES + DIRECT_ALIGNMENT, { shared: true });
const windowAt = (memory: Buffer, offset: number) => viewFor(memory, offset).subarray(0, WINDOW_BUFFER_BYTES);

export async function receiveWholeImage(store: ImageStore, upload: WholeImageUpload): Promise<VersionRecord> {
  const spoolDir = join(store.dataDir, "uploads");
  await mkdir(spoolDir, { recursive: true });
  const spool = join(spoolDir, `${upload.imageId}-${upload.version}-${randomUUID()}.part`);
  const file = await open(spool, "w+");
  // The whole image and each data chunk are hashed on the hasher's thread, from the windows:
  // this one receives, cuts and writes (one core each, as measured, instead of one for all).
  const hasher = new FileHasher(undefined, { chunks: true });
  const writer = new SpoolWriter(file, await DirectWriter.open(spool, file, { direct: true }), hasher);
  try {
    const window = new ChunkingWindow(WINDOW_BYTES, DEFAULT_CHUNKING, windowAt(windowMemory(), 0));
    const spare: Buffer[] = [];
    const cut = async (final: boolean) => {
      // The data chunks of the window, as runs of bytes to write: zero chunks stay holes, as
      // in an image assembled from chunks.
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
      const next = windowAt(spare.pop() ?? windowMemory(), decided.offset + decided.data.length);
      const written = window.shift(next);
      await writer.write(decided, runs, () => spare.push(Buffer.from(written.buffer)), WINDOWS);
    };
    let received = 0;
    let cutting: Promise<void> | undefined;
    await upload.body.pour({
      region: () => window.free(),
      advance: (bytes) => {
        received += bytes;
        checkImageSize(received, { maxImageBytes: upload.maxBytes });
        window.fill(bytes);
      },
      // A full window is cut, its bytes handed on, and the window shifted before more come.
      backpressure: () => {
        if (!cutting && window.free().length === 0) {
          cutting = cut(false).finally(() => {
            cutting = undefined;
          });
        }
        return cutting;
      },
    });
    await cutting;
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
 * Writes the decided bytes of each window to the spool file and hands them to the hasher, a
 * window's writes after the previous window's. At most `inFlight` windows wait for their
 * writes and hashes: a slow disk or a busy hasher slows the sender down.
 */
class SpoolWriter {
  private readonly file: FileHandle;
  private readonly writes: DirectWriter;
  private readonly hasher: FileHasher;
  private queue: Promise<void> = Promise.resolve();
  private waiting = 0;
  private failure: unknown;
  private sinceFlush = 0;
  private flushing: Promise<void> | undefined;

  constructor(file: FileHandle, writes: DirectWriter, hasher: FileHasher) {
    this.file = file;
    this.writes = writes;
    this.hasher = hasher;
  }

  /**
   * Queues the writes of `runs` of `decided` (its data chunks, at offsets relative to it) and
   * hands all of its bytes to the hasher, then calls `done` (its buffer is free again); waits
   * while more than `inFlight` windows are queued.
   */
  async write(
    decided: { offset: number; data: Buffer },
    runs: readonly WriteRun[],
    done: () => void,
    inFlight: number,
  ): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    // Handed over now, in the stream's order; a hasher that failed says so in its manifest.
    const hashed = this.hasher.hashBytes(decided.data);
    const bytes = decided.data.length;
    this.waiting++;
    this.queue = this.queue.then(async () => {
      try {
        if (this.failure !== undefined) return;
        await Promise.all(
          runs.map((run) =>
            this.writes.writeRun(decided.data, run.from, run.to - run.from, decided.offset + run.from),
          ),
        );
        this.sinceFlush += bytes;
        if (this.sinceFlush >= EARLY_FLUSH_BYTES && !this.flushing) {
          // Starts the disk's work on what went through the page cache during the transfer
          // (see partial-image.ts), beside the writes rather than before the next: durability
          // is the completion's fsync.
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
        await hashed.catch((error: unknown) => {
          this.failure ??= error;
        });
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
  }

  /** Waits for the writes queued, whatever became of them, and closes the direct descriptor. */
  async settle(): Promise<void> {
    await this.queue;
    await this.flushing;
    await this.writes.close();
  }
}
