import { Worker } from "node:worker_threads";

/*
 * The whole-image SHA-256 is computed from the image file itself, in order, while the
 * image is still being written: whenever a longer prefix of the file is final, the worker
 * reads it (from the page cache) and hashes it. It runs on its own thread so that the
 * second SHA-256 pass over every byte (the first is each chunk's verification) overlaps
 * with receiving and writing instead of following them.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { openSync, readSync, closeSync } = require("node:fs");
const { createHash } = require("node:crypto");
const fd = openSync(workerData.path, "r");
const hash = createHash("sha256");
const buffer = Buffer.allocUnsafe(8 << 20);
let done = 0;
let failed = false;
parentPort.on("message", (message) => {
  if (failed) return;
  try {
    while (done < message.to) {
      const read = readSync(fd, buffer, 0, Math.min(buffer.length, message.to - done), done);
      if (read === 0) throw new Error("the image file is shorter than " + message.to + " bytes");
      hash.update(buffer.subarray(0, read));
      done += read;
    }
    if (message.finish) {
      closeSync(fd);
      parentPort.postMessage({ digest: hash.digest("hex"), bytes: done });
    }
  } catch (error) {
    failed = true;
    closeSync(fd);
    parentPort.postMessage({ error: String(error && error.message ? error.message : error) });
  }
});
`;

/** SHA-256 of a file's prefix that grows as the caller says, on a worker thread. */
export class FileHasher {
  private readonly worker: Worker;
  private posted = 0;
  private readonly outcome: Promise<string>;
  private finishing = false;

  constructor(path: string) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { path } });
    // Idle hashers must not keep a process alive; `digest` holds it while it waits.
    this.worker.unref();
    // Listening from the start: a read error reported before `digest` is asked is not lost.
    this.outcome = new Promise<string>((resolve, reject) => {
      this.worker.on("message", (message: { digest?: string; error?: string }) => {
        if (message.error !== undefined) reject(new Error(`hashing the image failed: ${message.error}`));
        else resolve(message.digest as string);
        this.worker.terminate().catch(() => {});
      });
      this.worker.on("error", reject);
    });
    this.outcome.catch(() => {}); // observed by `digest`
  }

  /** Bytes [0, to) of the file are final: hash them when the worker gets to them. */
  advance(to: number): void {
    if (to <= this.posted || this.finishing) return;
    this.posted = to;
    this.worker.postMessage({ to });
  }

  /** The SHA-256 of bytes [0, size); the file must be final up to there. */
  async digest(size: number): Promise<string> {
    if (!this.finishing) {
      this.finishing = true;
      this.worker.ref();
      this.worker.postMessage({ to: size, finish: true });
    }
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
