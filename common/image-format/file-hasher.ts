import { Worker } from "node:worker_threads";

/*
 * The whole-image SHA-256 is computed from the image file itself, in order, while the
 * image is still being written: whenever a longer prefix of the file is final, the worker
 * reads it (from the page cache) and hashes it. It runs on its own thread so that the
 * second SHA-256 pass over every byte (the first is each chunk's verification) overlaps
 * with receiving and writing instead of following them. Told the lengths of the chunks the
 * file is cut into, it hashes each data chunk too, from the same reads (a streamed upload,
 * see whole-upload.ts, whose chunks nobody has hashed yet).
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { openSync, readSync, closeSync } = require("node:fs");
const { createHash, hash: hashOnce } = require("node:crypto");
const fd = openSync(workerData.path, "r");
const hash = createHash("sha256");
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
      hash.update(piece);
      if (workerData.chunks) hashChunks(piece);
      done += read;
    }
    if (message.finish) {
      closeSync(fd);
      parentPort.postMessage({ digest: hash.digest("hex"), bytes: done, chunks: Buffer.concat(digests) });
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

/** SHA-256 of a file's prefix that grows as the caller says, on a worker thread. */
export class FileHasher {
  private readonly worker: Worker;
  private posted = 0;
  private readonly outcome: Promise<Outcome>;
  private finishing = false;
  private pendingLengths: number[] = [];

  /** `chunks`: hash the chunks told by `addChunks` too (see `digests`). */
  constructor(path: string, options: { chunks?: boolean } = {}) {
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { path, chunks: options.chunks === true },
    });
    // Idle hashers must not keep a process alive; `digest` holds it while it waits.
    this.worker.unref();
    // Listening from the start: a read error reported before `digest` is asked is not lost.
    this.outcome = new Promise<Outcome>((resolve, reject) => {
      this.worker.on("message", (message: { digest?: string; error?: string; chunks: Uint8Array }) => {
        if (message.error !== undefined) reject(new Error(`hashing the image failed: ${message.error}`));
        else resolve({ digest: message.digest as string, chunks: message.chunks });
        this.worker.terminate().catch(() => {});
      });
      this.worker.on("error", reject);
    });
    this.outcome.catch(() => {}); // observed by `digest`
  }

  /**
   * The file's next chunks, in order, by length (a zero run: hashed whole, not as a chunk):
   * told to the worker with the next `advance`.
   */
  addChunk(length: number, zero: boolean): void {
    this.pendingLengths.push(zero ? -length : length);
  }

  /** Bytes [0, to) of the file are final: hash them when the worker gets to them. */
  advance(to: number): void {
    if (to <= this.posted || this.finishing) return;
    this.posted = to;
    this.worker.postMessage({ to, ...this.takeLengths() });
  }

  /** The SHA-256 of bytes [0, size); the file must be final up to there. */
  async digest(size: number): Promise<string> {
    return (await this.digests(size)).whole;
  }

  /**
   * The SHA-256 of bytes [0, size) and, when hashing chunks, the 32-byte SHA-256 of each data
   * chunk told, concatenated in order.
   */
  async digests(size: number): Promise<{ whole: string; chunks: Buffer }> {
    if (!this.finishing) {
      this.finishing = true;
      this.worker.ref();
      this.worker.postMessage({ to: size, finish: true, ...this.takeLengths() });
    }
    try {
      const { digest, chunks } = await this.outcome;
      return { whole: digest, chunks: Buffer.from(chunks.buffer, chunks.byteOffset, chunks.byteLength) };
    } finally {
      this.worker.unref();
    }
  }

  private takeLengths(): { lengths?: Int32Array } {
    if (this.pendingLengths.length === 0) return {};
    const lengths = Int32Array.from(this.pendingLengths);
    this.pendingLengths = [];
    return { lengths };
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
