import { Worker } from "node:worker_threads";
import { DIGEST_BYTES, zeroChunkDigest } from "./digest.ts";
import type { ChunkRef, Manifest } from "./manifest.ts";

/*
 * The whole-image SHA-256 is computed from the image file itself, in order, while the
 * image is still being written: whenever a longer prefix of the file is final, a worker
 * reads it (from the page cache) and hashes it. It runs on its own thread so that the
 * second SHA-256 pass over every byte (the first is each chunk's verification) overlaps
 * with receiving and writing instead of following them. Told the lengths of the chunks the
 * file is cut into, it hashes each data chunk too, from the same reads (a streamed upload,
 * see whole-upload.ts, or a file chunked by a client, whose chunks nobody has hashed yet).
 * A second worker for the chunks, reading the file again, was slower on two cores in
 * alternating runs: 1 GiB chunked by a client in 2.4-2.6 s instead of 1.9-2.0 s, uploaded
 * whole in 5.4 s instead of 4.7-4.8 s, with a quarter more CPU time. A caller whose own
 * thread has time to spare (chunkFile) hashes the whole file itself.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { openSync, readSync, closeSync } = require("node:fs");
const { createHash, hash: hashOnce } = require("node:crypto");
const fd = openSync(workerData.path, "r");
const hash = workerData.whole ? createHash("sha256") : null;
const buffer = Buffer.allocUnsafe(8 << 20);
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
      if (partial === null && take === left) digests.push(hashOnce("sha256", data, "buffer"));
      else {
        partial ??= createHash("sha256");
        partial.update(data);
        if (take === left) {
          digests.push(partial.digest());
          partial = null;
        }
      }
    }
    left -= take;
    at += take;
  }
}
parentPort.on("message", (message) => {
  if (failed) return;
  try {
    if (message.lengths) for (const length of message.lengths) lengths.push(length);
    while (done < message.to) {
      const read = readSync(fd, buffer, 0, Math.min(buffer.length, message.to - done), done);
      if (read === 0) throw new Error("the image file is shorter than " + message.to + " bytes");
      const piece = buffer.subarray(0, read);
      if (hash) hash.update(piece);
      if (workerData.chunks) hashChunks(piece);
      done += read;
    }
    if (message.finish) {
      closeSync(fd);
      parentPort.postMessage({ digest: hash ? hash.digest("hex") : "", chunks: Buffer.concat(digests) });
    }
  } catch (error) {
    failed = true;
    closeSync(fd);
    parentPort.postMessage({ error: String(error && error.message ? error.message : error) });
  }
});
`;

interface Outcome {
  digest: string;
  chunks: Uint8Array;
}

/** A worker's pass over a file: its whole SHA-256, each of its data chunks', or both. */
class HashingThread {
  private readonly worker: Worker;
  private readonly outcome: Promise<Outcome>;

  constructor(path: string, pass: { whole: boolean; chunks: boolean }) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { path, ...pass } });
    // Idle hashers must not keep a process alive; `finish` holds it while it waits.
    this.worker.unref();
    // Listening from the start: a read error reported before the outcome is asked is not lost.
    this.outcome = new Promise<Outcome>((resolve, reject) => {
      this.worker.on("message", (message: { digest?: string; error?: string; chunks: Uint8Array }) => {
        if (message.error !== undefined) reject(new Error(`hashing the image failed: ${message.error}`));
        else resolve({ digest: message.digest as string, chunks: message.chunks });
        this.worker.terminate().catch(() => {});
      });
      this.worker.on("error", reject);
    });
    this.outcome.catch(() => {}); // observed by `finish`
  }

  post(message: { to: number; lengths?: Int32Array }): void {
    this.worker.postMessage(message);
  }

  async finish(message: { to: number; lengths?: Int32Array }): Promise<Outcome> {
    this.worker.ref();
    this.worker.postMessage({ ...message, finish: true });
    try {
      return await this.outcome;
    } finally {
      this.worker.unref();
    }
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}

/** SHA-256 of a file's prefix that grows as the caller says, on a worker thread. */
export class FileHasher {
  private readonly thread: HashingThread;
  private posted = 0;
  private finishing: Promise<{ whole: string; chunks: Buffer }> | undefined;
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
  constructor(path: string, options: { chunks?: boolean; whole?: boolean } = {}) {
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
        chunks[i] = { digest: digests.chunks.toString("hex", at, at + DIGEST_BYTES), length, zero: false };
        at += DIGEST_BYTES;
      }
    }
    if (at !== digests.chunks.length) throw new Error("the hasher answered for other chunks than were told");
    return { size, digest: whole, chunks };
  }

  /**
   * The SHA-256 of bytes [0, size) and, when hashing chunks, the 32-byte SHA-256 of each data
   * chunk told, concatenated in order.
   */
  private digests(size: number): Promise<{ whole: string; chunks: Buffer }> {
    this.finishing ??= this.thread.finish({ to: size, ...this.takeLengths() }).then(({ digest, chunks }) => ({
      whole: digest,
      chunks: Buffer.from(chunks.buffer, chunks.byteOffset, chunks.byteLength),
    }));
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
