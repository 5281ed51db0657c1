import { constants } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { readFully, writeFully } from "../../common/files.ts";

/*
 * Reads and writes of image data that bypass the page cache. An image a manager receives is
 * written once and read later by a VM or a peer, so caching it as it is written buys nothing,
 * and on the VMs managers run on it costs most of a transfer: 1 GiB written through the page
 * cache here took 1.2-1.3 s plus 0.5 s of fsync and 1.9-2.0 CPU-s of kernel time, written
 * with O_DIRECT 0.6 s and 0.1 CPU-s. A buffered copy of 1 GiB took 3.3-7.6 s, nearly all of
 * it in the kernel, where direct reads and writes took 0.9-1.1 s: memory the host had taken
 * back from the VM is faulted in again for the page cache.
 *
 * O_DIRECT wants the file offset, the length and the memory address aligned to the device's
 * block. Chunks start anywhere, so each write is split: its page-aligned middle goes direct,
 * the few bytes before and after it through the page cache. They share no page with a direct
 * write (a page wholly inside one write belongs to no other), so the kernel never has to
 * reconcile the two for a page. Node has no API for aligned memory; a WebAssembly memory is
 * mapped by pages, so its first byte is page-aligned, and buffers made here remember that.
 * A buffer from elsewhere, or a filesystem without O_DIRECT, goes through the page cache.
 */

/** The alignment of direct writes: a page, a multiple of the logical block of every device here. */
export const DIRECT_ALIGNMENT = 4096;
/*
 * A run goes to the file in writes of this size. Measured here (1 GiB into a new file, after
 * the machine's free memory had been idle for 3 s): 8 MiB writes took 1.1-1.9 s, 2 MiB writes
 * 1.9-2.5 s, 1 MiB writes 0.25 s, 256 KiB writes 0.35 s. Large writes make the kernel allocate
 * page cache in large folios, which on this kind of VM means memory the host has taken back
 * and must fault in again.
 */
export const WRITE_PIECE_BYTES = 1 << 20;
/** A shorter middle goes with its head and tail through the page cache: one write, not three. */
const MIN_DIRECT_BYTES = 64 << 10;
const WASM_PAGE_BYTES = 64 << 10;

const pageAligned = new WeakSet<ArrayBufferLike>();
// The runtime has WebAssembly.Memory; the project's type libraries (es2024, node) do not declare it.
const WasmMemory = (
  globalThis as unknown as {
    WebAssembly: {
      Memory: new (pages: {
        initial: number;
        maximum: number;
        shared?: boolean;
      }) => {
        buffer: ArrayBuffer | SharedArrayBuffer;
      };
    };
  }
).WebAssembly.Memory;

/**
 * A buffer of at least `bytes` bytes whose first byte lies on a page boundary; `shared`: over a
 * SharedArrayBuffer, which a worker can read without a copy. V8 reserves address space for each
 * WebAssembly memory (about 8 GiB each here, never touched); should it fail to, the buffer is
 * an ordinary one and its writes go through the page cache.
 */
export function alignedBuffer(bytes: number, options: { shared?: boolean } = {}): Buffer {
  const pages = Math.ceil(bytes / WASM_PAGE_BYTES);
  const shared = options.shared === true;
  let memory: { buffer: ArrayBuffer | SharedArrayBuffer };
  try {
    memory = new WasmMemory({ initial: pages, maximum: pages, shared });
  } catch {
    const size = pages * WASM_PAGE_BYTES;
    return shared ? Buffer.from(new SharedArrayBuffer(size)) : Buffer.allocUnsafeSlow(size);
  }
  pageAligned.add(memory.buffer);
  return Buffer.from(memory.buffer);
}

/** The whole of the aligned buffer `view` is part of (or `view` itself if it is not from alignedBuffer). */
export function wholeBuffer(view: Buffer): Buffer {
  return pageAligned.has(view.buffer) ? Buffer.from(view.buffer) : view;
}

/**
 * The part of `whole` (from alignedBuffer) to hold bytes of a file from `offset` on: it starts
 * at the same distance from a page boundary as `offset`, so the bytes of every page-aligned
 * file range lie in page-aligned memory. At most DIRECT_ALIGNMENT - 1 bytes shorter.
 */
export function viewFor(whole: Buffer, offset: number): Buffer {
  return whole.subarray(offset % DIRECT_ALIGNMENT);
}

/**
 * Opens `path` for reading with O_DIRECT, for `readInto`; undefined where the filesystem
 * refuses it or the file is gone.
 */
export function openDirectReader(path: string): Promise<FileHandle | undefined> {
  return open(path, constants.O_RDONLY | constants.O_DIRECT).catch(() => undefined);
}

/**
 * Reads the bytes [position, position + length) of a file into `view`, a view made by
 * `viewFor(whole, position)`, and answers how many of them it read (fewer: the file ends
 * first). With `direct` (the file opened by openDirectReader) it reads the whole pages around
 * them, which `whole` has room for, past the page cache: a base copy reads each byte once,
 * and caching 1 GiB of them cost this VM 0.3 CPU-s of kernel time, 0.5-0.6 s against 0.35-0.5 s
 * direct. Otherwise, or if the kernel refuses the direct read, it reads through `file`.
 */
export async function readInto(
  view: Buffer,
  length: number,
  position: number,
  file: FileHandle,
  direct: FileHandle | undefined,
): Promise<number> {
  const lead = position % DIRECT_ALIGNMENT;
  const span = Math.ceil((lead + length) / DIRECT_ALIGNMENT) * DIRECT_ALIGNMENT;
  if (
    direct === undefined ||
    misalignment(view, 0) !== lead ||
    view.byteOffset - lead + span > view.buffer.byteLength
  ) {
    return readFully(file, view, length, position);
  }
  const pages = Buffer.from(view.buffer, view.byteOffset - lead, span);
  let done = 0;
  try {
    // Short only at the end of the file, where the next read answers 0.
    while (done < span && done % DIRECT_ALIGNMENT === 0) {
      const { bytesRead } = await direct.read(pages, done, span - done, position - lead + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EINVAL") throw error;
    return readFully(file, view, length, position);
  }
  return Math.max(0, Math.min(length, done - lead));
}

/** Where the bytes `from` of `buffer` lie relative to a page boundary; undefined if unknown. */
function misalignment(buffer: Buffer, from: number): number | undefined {
  if (!pageAligned.has(buffer.buffer)) return undefined;
  return (buffer.byteOffset + from) % DIRECT_ALIGNMENT;
}

export class DirectWriter {
  /** Bytes written with O_DIRECT and through the page cache, for tests and measurements. */
  directBytes = 0;
  cachedBytes = 0;
  private readonly file: FileHandle;
  private readonly directFile: FileHandle | undefined;
  private directWorks: boolean;

  private constructor(file: FileHandle, direct: FileHandle | undefined) {
    this.file = file;
    this.directFile = direct;
    this.directWorks = direct !== undefined;
  }

  /**
   * A writer into `file`, open at `path`. `direct: false`, or a filesystem that refuses
   * O_DIRECT (tmpfs before Linux 6.6, some FUSE), gives one that writes through the page cache.
   */
  static async open(path: string, file: FileHandle, options: { direct: boolean }): Promise<DirectWriter> {
    if (!options.direct) return new DirectWriter(file, undefined);
    const direct = await open(path, constants.O_WRONLY | constants.O_DIRECT).catch(() => undefined);
    return new DirectWriter(file, direct);
  }

  get usesDirect(): boolean {
    return this.directWorks;
  }

  /**
   * Writes a run of `length` bytes of `buffer` from `from` at `position`, in pieces of about
   * WRITE_PIECE_BYTES that go to the thread pool together: written one after another, their
   * round trips cost a delta's whole-image copy about 0.2 s per GiB. Pieces end on page
   * boundaries, so only the run's own edges go through the page cache, not a page at every
   * piece boundary of a run that starts inside a page.
   */
  async writeRun(
    buffer: Buffer,
    from: number,
    length: number,
    position: number,
    direct = true,
  ): Promise<void> {
    const pieces: Array<Promise<void>> = [];
    for (let at = 0; at < length; ) {
      const pageEnd = Math.floor((position + at + WRITE_PIECE_BYTES) / DIRECT_ALIGNMENT) * DIRECT_ALIGNMENT;
      const end = Math.min(length, pageEnd - position);
      pieces.push(this.write(buffer, from + at, end - at, position + at, direct));
      at = end;
    }
    await Promise.all(pieces);
  }

  /**
   * Writes `length` bytes of `buffer` from `from` at `position` in the file; `direct: false`
   * puts all of them through the page cache.
   */
  async write(buffer: Buffer, from: number, length: number, position: number, direct = true): Promise<void> {
    const end = position + length;
    const start = Math.ceil(position / DIRECT_ALIGNMENT) * DIRECT_ALIGNMENT;
    const stop = Math.floor(end / DIRECT_ALIGNMENT) * DIRECT_ALIGNMENT;
    const directFile = this.directFile;
    if (
      !direct ||
      directFile === undefined ||
      !this.directWorks ||
      stop - start < MIN_DIRECT_BYTES ||
      misalignment(buffer, from + (start - position)) !== 0
    ) {
      await writeFully(this.file, buffer, from, length, position);
      this.cachedBytes += length;
      return;
    }
    const edges: Array<Promise<void>> = [];
    if (start > position) edges.push(writeFully(this.file, buffer, from, start - position, position));
    if (end > stop) edges.push(writeFully(this.file, buffer, from + (stop - position), end - stop, stop));
    await Promise.all([
      this.writeDirect(directFile, buffer, from + (start - position), stop - start, start),
      ...edges,
    ]);
    this.cachedBytes += length - (stop - start);
  }

  private async writeDirect(
    direct: FileHandle,
    buffer: Buffer,
    from: number,
    length: number,
    position: number,
  ): Promise<void> {
    try {
      // A direct write is never short on a regular file but at its end or with the disk full,
      // and both report themselves on the next attempt: one call is the write.
      const { bytesWritten } = await direct.write(buffer, from, length, position);
      this.directBytes += bytesWritten;
      if (bytesWritten < length) {
        await writeFully(
          this.file,
          buffer,
          from + bytesWritten,
          length - bytesWritten,
          position + bytesWritten,
        );
        this.cachedBytes += length - bytesWritten;
      }
    } catch (error) {
      // EINVAL: this file or its memory turned out not to suit O_DIRECT after all. The page
      // cache takes this write and every later one (the descriptor is closed with the writer:
      // other writes may still be using it).
      if ((error as NodeJS.ErrnoException).code !== "EINVAL") throw error;
      this.directWorks = false;
      await writeFully(this.file, buffer, from, length, position);
      this.cachedBytes += length;
    }
  }

  /** Closes the direct descriptor, once no write is in flight; the file given to `open` stays open. */
  async close(): Promise<void> {
    this.directWorks = false;
    await this.directFile?.close().catch(() => {});
  }
}
