import { Worker } from "node:worker_threads";
import { zeroChunkDigest } from "./digest.ts";
import type { ChunkRef, Manifest } from "./manifest.ts";

const HEX_DIGEST_LENGTH = 64;

/*
 * The whole-image SHA-256 is computed from the image file itself, in order, while the
 * image is still being written: whenever a longer prefix of the file is final, a worker
 * reads it (from the page cache) and hashes it. It runs on its own thread so that the
 * second SHA-256 pass over every byte (the first is each chunk's verification) overlaps
 * with receiving and writing instead of following them. Told the lengths of the chunks the
 * file is cut into, it hashes each data chunk too, from the same reads (a file chunked by a
 * client, whose chunks nobody has hashed yet).
 * A second worker for the chunks, reading the file again, was slower on two cores in
 * alternating runs: 1 GiB chunked by a client in 2.4-2.6 s instead of 1.9-2.0 s, uploaded
 * whole in 5.4 s instead of 4.7-4.8 s, with a quarter more CPU time. A caller whose own
 * thread has time to spare (chunkFile) hashes the whole file itself.
 *
 * A caller that holds the image's bytes in shared memory as they arrive (a streamed upload,
 * see whole-upload.ts) hands them over instead, and the worker hashes them there: no file is
 * read back, so the file can be written past the page cache.
 *
 * Both hashes take each slice of SLICE_BYTES in turn while it is in the core's cache: this
 * VM's memory feeds SHA-256 at 1.1-1.2 GB/s from buffers of 16 MiB and more, where it runs at
 * 1.7 GB/s from ones of 4 MiB and less.
 *
 * Node's modules come from process.getBuiltinModule: under `--input-type=module`, inherited by
 * an evaluated worker, require does not exist (see chunk-verifier.ts).
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = process.getBuiltinModule("node:worker_threads");
const { openSync, readSync, closeSync } = process.getBuiltinModule("node:fs");
const { createHash, hash: hashOnce } = process.getBuiltinModule("node:crypto");
const SLICE_BYTES = 1 << 20;
const fd = workerData.path === undefined ? undefined : openSync(workerData.path, "r");
const close = () => { if (fd !== undefined) closeSync(fd); };
const hash = workerData.whole ? createHash("sha256") : null;
const buffer = fd === undefined ? null : Buffer.allocUnsafe(SLICE_BYTES);
let done = 0;
let failed = false;
// Chunk lengths still to hash (negative: a run of zeros, not hashed), and their digests.
const lengths = [];
let next = 0;
let left = 0;
let skipping = false;
let partial = null;
const digests = [];
function hashChunks(piece) {
  let at = 0;
  while (at < piece.length) {
    if (left === 0) {
      if (next === lengths.length) throw new Error("the file runs past the chunks told");
      const length = lengths[next++];
      skipping = length < 0;
      left = Math.abs(length);
    }
    const take = Math.min(left, piece.length - at);
    if (!skipping) {
      const data = piece.subarray(at, at + take);
      if (partial === null && take === left) digests.push(hashOnce("sha256", data));
      else {
        partial ??= createHash("sha256");
        partial.update(data);
        if (take === left) {
          digests.push(partial.digest("hex"));
          partial = null;
        }
      }
    }
    left -= take;
    at += take;
  }
}
function hashPiece(piece) {
  if (hash) hash.update(piece);
  if (workerData.chunks) hashChunks(piece);
  done += piece.length;
}
parentPort.on("message", (message) => {
  if (failed) return;
  try {
    if (message.lengths) for (const length of message.lengths) lengths.push(length);
    if (message.memory) {
      const bytes = Buffer.from(message.memory, message.offset, message.length);
      for (let at = 0; at < bytes.length; at += SLICE_BYTES) {
        hashPiece(bytes.subarray(at, Math.min(bytes.length, at + SLICE_BYTES)));
      }
      parentPort.postMessage({ hashed: message.id });
    }
    while (done < message.to) {
      if (fd === undefined) throw new Error("bytes up to " + message.to + " were not handed over");
      const read = readSync(fd, buffer, 0, Math.min(buffer.length, message.to - done), done);
      if (read === 0) throw new Error("the image file is shorter than " + message.to + " bytes");
      hashPiece(buffer.subarray(0, read));
    }
    if (message.finish) {
      close();
      parentPort.postMessage({ digest: hash ? hash.digest("hex") : "", chunks: digests.join("") });
    }
  } catch (error) {
    failed = true;
    close();
    parentPort.postMessage({ error: String(error && error.message ? error.message : error) });
  }
});
`;

interface Outcome {
  digest: string;
  /** Every data chunk's SHA-256 in hex, in order, as one string. */
  chunks: string;
}

/** A worker's pass over a file: its whole SHA-256, each of its data chunks', or both. */
class HashingThread {
  private readonly worker: Worker;
  private readonly outcome: Promise<Outcome>;
  /** Bytes handed over in shared memory and not hashed yet, by id: what to call when they are. */
  private readonly handedOver = new Map<number, () => void>();
  private nextId = 0;
  private finishing = false;
  /** The worker failed or was closed: it hashes nothing more. */
  private stopped = false;

  constructor(path: string | undefined, pass: { whole: boolean; chunks: boolean }) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { path, ...pass } });
    // Idle hashers must not keep a process alive; `finish` and `handOver` hold it while they wait.
    this.worker.unref();
    // Listening from the start: a read error reported before the outcome is asked is not lost.
    this.outcome = new Promise<Outcome>((resolve, reject) => {
      this.worker.on(
        "message",
        (message: { hashed?: number; digest?: string; error?: string; chunks: string }) => {
          if (message.hashed !== undefined) {
            this.settle(message.hashed);
            return;
          }
          if (message.error !== undefined) reject(new Error(`hashing the image failed: ${message.error}`));
          else resolve({ digest: message.digest as string, chunks: message.chunks });
          this.worker.terminate().catch(() => {});
        },
      );
      this.worker.on("error", reject);
    });
    // Observed by `finish`. A failed worker hashes nothing more: what was handed over is free
    // again, and the failure is the outcome.
    this.outcome.catch(() => {
      this.stopped = true;
      for (const id of [...this.handedOver.keys()]) this.settle(id);
    });
  }

  post(message: { to: number; lengths?: Int32Array }): void {
    this.worker.postMessage(message);
  }

  /** Has `bytes`, over a SharedArrayBuffer, hashed where they are; resolves once they were. */
  handOver(bytes: Buffer, lengths: { lengths?: Int32Array }): Promise<void> {
    if (!(bytes.buffer instanceof SharedArrayBuffer))
      throw new Error("only shared memory can be handed over");
    if (this.stopped) return Promise.resolve();
    const id = this.nextId++;
    const hashed = new Promise<void>((resolve) => this.handedOver.set(id, resolve));
    if (this.handedOver.size === 1) this.worker.ref();
    this.worker.postMessage({
      memory: bytes.buffer,
      offset: bytes.byteOffset,
      length: bytes.byteLength,
      id,
      ...lengths,
    });
    return hashed;
  }

  private settle(id: number): void {
    const resolve = this.handedOver.get(id);
    if (!resolve) return;
    this.handedOver.delete(id);
    if (this.handedOver.size === 0 && !this.finishing) this.worker.unref();
    resolve();
  }

  async finish(message: { to: number; lengths?: Int32Array }): Promise<Outcome> {
    this.finishing = true;
    this.worker.ref();
    this.worker.postMessage({ ...message, finish: true });
    try {
      return await this.outcome;
    } finally {
      this.worker.unref();
    }
  }

  async close(): Promise<void> {
    this.stopped = true;
    await this.worker.terminate();
    for (const id of [...this.handedOver.keys()]) this.settle(id);
  }
}

/**
 * SHA-256 of a file's prefix that grows as the caller says, on a worker thread: read from the
 * file (`advance`) or handed over in shared memory (`hashBytes`).
 */
export class FileHasher {
  private readonly thread: HashingThread;
  private posted = 0;
  private finishing: Promise<{ whole: string; chunks: string }> | undefined;
  /*
   * Every chunk told, by length (negative: a zero run): a manifest's entries are made once,
   * when their digests are known, rather than as placeholders filled in by each caller.
   */
  private lengths = new Int32Array(1 << 14);
  private count = 0;
  private told = 0; // lengths[0, told) were sent to the worker

  /**
   * `chunks`: hash the chunks told by `addChunk` too (see `manifest`); `whole: false`: only
   * those (the caller hashes the whole file itself).
   */
  constructor(path: string | undefined, options: { chunks?: boolean; whole?: boolean } = {}) {
    this.thread = new HashingThread(path, {
      whole: options.whole !== false,
      chunks: options.chunks === true,
    });
  }

  /**
   * The file's next chunk, in order, by length (a zero run: hashed whole, not as a chunk):
   * told to the worker with the next `advance`.
   */
  addChunk(length: number, zero: boolean): void {
    if (this.count === this.lengths.length) {
      const grown = new Int32Array(this.lengths.length * 2);
      grown.set(this.lengths);
      this.lengths = grown;
    }
    this.lengths[this.count++] = zero ? -length : length;
  }

  /** Bytes [0, to) of the file are final: hash them when the worker gets to them. */
  advance(to: number): void {
    if (to <= this.posted || this.finishing) return;
    this.posted = to;
    this.thread.post({ to, ...this.takeLengths() });
  }

  /**
   * The next bytes of the file, in memory over a SharedArrayBuffer (alignedBuffer with
   * `shared`): the worker hashes them there, rather than read them from the file. Resolves
   * once it has; until then they must not change. Without a path, all of the file's bytes
   * are handed over this way.
   */
  async hashBytes(bytes: Buffer): Promise<void> {
    if (this.finishing) throw new Error("the file was hashed to its end already");
    this.posted += bytes.length;
    await this.thread.handOver(bytes, this.takeLengths());
  }

  /** The SHA-256 of bytes [0, size); the file must be final up to there. */
  async digest(size: number): Promise<string> {
    return (await this.digests(size)).whole;
  }

  /**
   * The manifest of bytes [0, size), cut into the chunks told: each data chunk's SHA-256 and the
   * whole file's, as the worker read them from the file (or `digest`, when it does not hash
   * the whole file).
   */
  async manifest(size: number, digest?: string): Promise<Manifest> {
    const digests = await this.digests(size);
    const whole = digest ?? digests.whole;
    if (whole === "") throw new Error("the whole file was not hashed: pass its digest");
    const chunks: ChunkRef[] = new Array(this.count);
    let at = 0;
    for (let i = 0; i < this.count; i++) {
      const length = this.lengths[i] as number;
      if (length < 0) {
        chunks[i] = { digest: zeroChunkDigest(-length), length: -length, zero: true };
      } else {
        chunks[i] = { digest: digests.chunks.slice(at, at + HEX_DIGEST_LENGTH), length, zero: false };
        at += HEX_DIGEST_LENGTH;
      }
    }
    if (at !== digests.chunks.length) throw new Error("the hasher answered for other chunks than were told");
    return { size, digest: whole, chunks };
  }

  /**
   * The SHA-256 of bytes [0, size) and, when hashing chunks, the SHA-256 of each data chunk
   * told, in hex, concatenated in order. Hex strings rather than 32-byte buffers: a buffer per
   * chunk kept the garbage collector busy, and the manifest wants hex anyway.
   */
  private digests(size: number): Promise<{ whole: string; chunks: string }> {
    this.finishing ??= this.thread
      .finish({ to: size, ...this.takeLengths() })
      .then(({ digest, chunks }) => ({ whole: digest, chunks }));
    return this.finishing;
  }

  private takeLengths(): { lengths?: Int32Array } {
    if (this.told === this.count) return {};
    const lengths = this.lengths.slice(this.told, this.count);
    this.told = this.count;
    return { lengths };
  }

  async close(): Promise<void> {
    await this.thread.close();
  }
}
