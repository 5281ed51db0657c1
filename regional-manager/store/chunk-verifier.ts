import { Worker } from "node:worker_threads";
import { sha256Hex } from "../../common/image-format/digest.ts";

/*
 * Checks received chunks against their digests on a worker thread, where they lie: a pull's
 * runs are shared memory (alignedBuffer with `shared`), so nothing is copied. On the
 * receiving thread, SHA-256 was most of a pull's work: 0.9 of its 1.5 CPU-s of user time for
 * 1 GiB from a cached source here, and the thread was busy for 85% of the pull. Moved here, it
 * runs beside the receiving instead. A run is written only once each of its chunks is
 * checked (see PartialImageWriter), so nothing unverified reaches the image.
 *
 * The worker's source takes Node's modules with process.getBuiltinModule, not require: an
 * evaluated worker inherits its process's `--input-type`, and under `--input-type=module`
 * require does not exist there (the verifier then fell back to checking on the caller's thread).
 */
const WORKER_SOURCE = `
const { parentPort } = process.getBuiltinModule("node:worker_threads");
const { hash } = process.getBuiltinModule("node:crypto");
parentPort.on("message", ({ id, memory, offset, froms, lengths, digests }) => {
  const bytes = Buffer.from(memory, offset);
  const bad = [];
  for (let i = 0; i < froms.length; i++) {
    const digest = hash("sha256", bytes.subarray(froms[i], froms[i] + lengths[i]));
    if (digest !== digests.slice(i * 64, i * 64 + 64)) bad.push(i);
  }
  parentPort.postMessage({ id, bad });
});
`;

/** A chunk of a buffer to check: its bytes [from, from + length) should have `digest`. */
export interface ChunkCheck {
  from: number;
  length: number;
  digest: string;
}

/** Checks chunks in shared memory on a thread of its own, started at the first check. */
export class ChunkVerifier {
  private worker: Worker | undefined;
  /** The worker failed or was closed: checks are made on the caller's thread from then on. */
  private broken = false;
  /** Checks asked and not answered: how to answer each, and how to make it here instead. */
  private readonly waiting = new Map<number, { resolve: (bad: number[]) => void; here: () => number[] }>();
  private nextId = 0;

  /**
   * The indexes in `checks` of the chunks of `buffer` that do not match their digests. The
   * bytes must not change until it answers. A buffer that is not shared is checked here.
   */
  verify(buffer: Buffer, checks: readonly ChunkCheck[]): Promise<number[]> {
    const worker = this.broken || !(buffer.buffer instanceof SharedArrayBuffer) ? undefined : this.start();
    if (!worker) return Promise.resolve(checkHere(buffer, checks));
    const id = this.nextId++;
    const answer = new Promise<number[]>((resolve) =>
      this.waiting.set(id, { resolve, here: () => checkHere(buffer, checks) }),
    );
    // An idle verifier does not keep the process alive; one with checks to answer does.
    if (this.waiting.size === 1) worker.ref();
    const froms = new Float64Array(checks.length);
    const lengths = new Uint32Array(checks.length);
    let digests = "";
    for (const [i, check] of checks.entries()) {
      froms[i] = check.from;
      lengths[i] = check.length;
      digests += check.digest;
    }
    worker.postMessage({ id, memory: buffer.buffer, offset: buffer.byteOffset, froms, lengths, digests });
    return answer;
  }

  /**
   * Starts the worker ahead of the first check: a thread takes tens of milliseconds to start,
   * which a pull's first run would otherwise wait for.
   */
  warmUp(): void {
    if (!this.broken) this.start();
  }

  /** The worker, started if need be; undefined (and checks made here from then on) if it cannot start. */
  private start(): Worker | undefined {
    if (this.worker) return this.worker;
    let worker: Worker;
    try {
      worker = new Worker(WORKER_SOURCE, { eval: true });
    } catch {
      this.broken = true;
      return undefined;
    }
    worker.on("message", ({ id, bad }: { id: number; bad: number[] }) => this.settle(id, bad));
    const fail = () => {
      // Whatever it was asked and did not answer is checked here.
      this.broken = true;
      for (const [id, { here }] of [...this.waiting]) this.settle(id, here());
    };
    worker.on("error", fail);
    worker.on("exit", fail);
    // After the listeners: a "message" listener refs the worker's port again.
    worker.unref();
    this.worker = worker;
    return worker;
  }

  private settle(id: number, bad: number[]): void {
    const waiting = this.waiting.get(id);
    if (!waiting) return;
    this.waiting.delete(id);
    if (this.waiting.size === 0) this.worker?.unref();
    waiting.resolve(bad);
  }

  /** Stops the worker (what it was asked is checked here); later checks are made here too. */
  async close(): Promise<void> {
    this.broken = true;
    await this.worker?.terminate();
  }
}

function checkHere(buffer: Buffer, checks: readonly ChunkCheck[]): number[] {
  const bad: number[] = [];
  for (const [i, { from, length, digest }] of checks.entries()) {
    if (sha256Hex(buffer.subarray(from, from + length)) !== digest) bad.push(i);
  }
  return bad;
}
