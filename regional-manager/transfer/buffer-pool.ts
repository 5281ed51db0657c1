/**
 * Equal buffers handed out and given back, so that serving one request after another
 * allocates nothing: fresh large buffers are external memory, and allocating them per request
 * kept V8 running full garbage collections every 100-150 ms. A buffer never given back (its
 * request died) is simply collected; at most `keep` are kept for reuse.
 */
export class BufferPool {
  private readonly bytes: number;
  private readonly keep: number;
  private readonly free: Buffer[] = [];
  private readonly lent = new WeakMap<ArrayBufferLike, Buffer>();

  constructor(bytes: number, keep: number) {
    this.bytes = bytes;
    this.keep = keep;
  }

  take(): Buffer {
    // allocUnsafeSlow: each buffer owns its memory, so a view of it identifies it.
    const buffer = this.free.pop() ?? Buffer.allocUnsafeSlow(this.bytes);
    this.lent.set(buffer.buffer, buffer);
    return buffer;
  }

  /** Gives back the buffer `view` lies in (once). */
  give(view: Uint8Array): void {
    const buffer = this.lent.get(view.buffer);
    if (!buffer) return;
    this.lent.delete(view.buffer);
    if (this.free.length < this.keep) this.free.push(buffer);
  }
}
