import { type FileHandle, mkdir, open, readdir, rename, rm, unlink } from "node:fs/promises";
import { join } from "node:path";
import { readFully, syncDirectory, writeFileDurably } from "../../common/files.ts";
import { DIGEST_BYTES } from "../../common/image-format/digest.ts";
import { asStoreError, StoreError } from "./errors.ts";
import { verifyChunk } from "./verify-chunk.ts";

/*
 * Chunks live in append-only pack files, never one file per chunk. A pack is a sequence of
 * records in the same form chunks take on the wire (32-byte digest | u32 length | data),
 * so a source serves runs of adjacent chunks straight from one read, and a pack can be
 * checked or re-indexed on its own. A pack is written as
 * `pack-N.pack.tmp`; sealing it fsyncs it, writes its index `pack-N.idx.tmp` (digest,
 * offset, length per chunk), fsyncs that, renames the pack and then the index. The index
 * rename is the commit point: on open, packs without an index and every .tmp are deleted,
 * so a crash loses at most the unsealed pack and never leaves a half chunk that looks whole.
 *
 * Chunks may also lie in image files (see partial-image.ts): a pulled chunk is written once,
 * straight into the image of the version being pulled, and that image then stores it. The
 * image store tells this store where such chunks are (`addImageLocation`) and takes them
 * back before it deletes the image (`dropImageLocations`); packs never duplicate them.
 */

const PACK_SEAL_BYTES = 32 << 20; // bounds what a crash can lose; larger packs fsync less often
const WRITE_BATCH_BYTES = 4 << 20; // one write per batch of records instead of one per chunk
const MAX_PENDING_WRITE_BYTES = 32 << 20;
/** The most bytes one read of adjacent chunks covers (and the size of readData's buffers). */
export const READ_BUFFER_BYTES = 4 << 20;
const INDEX_ENTRY_BYTES = DIGEST_BYTES + 8 + 4;
export const PACK_RECORD_HEADER_BYTES = DIGEST_BYTES + 4;

export interface ChunkLocation {
  pack: number;
  /** Where the chunk's record (header, then data) starts in the pack. */
  offset: number;
  /** Bytes of chunk data. */
  length: number;
}

interface OpenPack {
  id: number;
  file: FileHandle;
  size: number; // bytes written or staged
  entries: Array<[string, ChunkLocation]>;
  staging: Buffer; // records not yet written, contiguous
  staged: number;
  writeOffset: number; // where `staging` starts in the file
  failed: boolean; // a write failed: the pack is discarded, later tasks for it do nothing
}

/** A verified chunk inside an image file (pending or available) that the image store owns. */
export interface ImageChunkLocation {
  file: FileHandle;
  offset: number;
  length: number;
  /** The image version whose file it is ("imageId@version"). */
  owner: string;
}

export interface ChunkStoreOptions {
  sealBytes?: number;
}

function packName(id: number): string {
  return `pack-${String(id).padStart(8, "0")}`;
}

export function encodePackIndex(entries: ReadonlyArray<[string, ChunkLocation]>): Buffer {
  const out = Buffer.allocUnsafe(entries.length * INDEX_ENTRY_BYTES);
  let at = 0;
  for (const [digest, location] of entries) {
    out.write(digest, at, DIGEST_BYTES, "hex");
    out.writeBigUInt64BE(BigInt(location.offset), at + DIGEST_BYTES);
    out.writeUInt32BE(location.length, at + DIGEST_BYTES + 8);
    at += INDEX_ENTRY_BYTES;
  }
  return out;
}

export function decodePackIndex(pack: number, data: Buffer): Array<[string, ChunkLocation]> {
  if (data.length % INDEX_ENTRY_BYTES !== 0) throw new Error(`pack index ${pack} is truncated`);
  const entries: Array<[string, ChunkLocation]> = [];
  for (let at = 0; at < data.length; at += INDEX_ENTRY_BYTES) {
    entries.push([
      data.toString("hex", at, at + DIGEST_BYTES),
      {
        pack,
        offset: Number(data.readBigUInt64BE(at + DIGEST_BYTES)),
        length: data.readUInt32BE(at + DIGEST_BYTES + 8),
      },
    ]);
  }
  return entries;
}

export class ChunkStore {
  readonly dir: string;
  private readonly sealBytes: number;
  private readonly index = new Map<string, ChunkLocation>();
  /** Chunks held in image files and in no pack (the two maps never share a digest). */
  private readonly inImages = new Map<string, ImageChunkLocation>();
  private readonly sealedPacks = new Map<number, FileHandle>();
  /** Packs being written or sealed: readable before they are sealed. */
  private readonly unsealedPacks = new Map<number, FileHandle>();
  /** Records accepted but not yet written to their pack, served from memory meanwhile. */
  private readonly unwritten = new Map<string, Buffer>();
  private nextPackId = 1;
  private current: OpenPack | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private pendingBytes = 0;
  /** Staging buffers whose records are on disk, reused: allocating 4 MiB per write kept the GC busy. */
  private readonly spareStaging: Buffer[] = [];
  private backgroundError: unknown;
  private readonly sealing = new Set<Promise<void>>();

  private constructor(dir: string, options: ChunkStoreOptions) {
    this.dir = dir;
    this.sealBytes = options.sealBytes ?? PACK_SEAL_BYTES;
  }

  static async open(dir: string, options: ChunkStoreOptions = {}): Promise<ChunkStore> {
    await mkdir(dir, { recursive: true });
    const store = new ChunkStore(dir, options);
    await store.load();
    return store;
  }

  private async load(): Promise<void> {
    const names = await readdir(this.dir);
    const indexed = new Set(names.filter((n) => n.endsWith(".idx")).map((n) => n.slice(0, -4)));
    for (const name of names) {
      const base = name.replace(/\.(pack|idx)(\.tmp)?$/, "");
      const id = Number(base.slice(5));
      if (Number.isInteger(id)) this.nextPackId = Math.max(this.nextPackId, id + 1);
      if (name.endsWith(".tmp") || (name.endsWith(".pack") && !indexed.has(base))) {
        await rm(join(this.dir, name), { force: true });
      }
    }
    for (const base of indexed) {
      const id = Number(base.slice(5));
      const idx = await open(join(this.dir, `${base}.idx`), "r");
      const data = await idx.readFile();
      await idx.close();
      for (const [digest, location] of decodePackIndex(id, data)) {
        if (!this.index.has(digest)) this.index.set(digest, location);
      }
      this.sealedPacks.set(id, await open(join(this.dir, `${base}.pack`), "r"));
    }
  }

  has(digest: string): boolean {
    return this.index.has(digest) || this.inImages.has(digest);
  }

  get chunkCount(): number {
    return this.index.size + this.inImages.size;
  }

  *digests(): IterableIterator<string> {
    yield* this.index.keys();
    yield* this.inImages.keys();
  }

  /** Bytes of chunk data, counting each stored chunk once. */
  storedBytes(): number {
    let total = 0;
    for (const location of this.index.values()) total += location.length;
    for (const location of this.inImages.values()) total += location.length;
    return total;
  }

  /**
   * Records that a chunk, verified against its digest, has been written into an image file.
   * Ignored when the chunk is already stored (a pack or another image keeps it).
   */
  addImageLocation(digest: string, location: ImageChunkLocation): void {
    if (!this.has(digest)) this.inImages.set(digest, location);
  }

  /** The chunks stored only in `owner`'s image file. */
  digestsOnlyIn(owner: string): string[] {
    const digests: string[] = [];
    for (const [digest, location] of this.inImages) if (location.owner === owner) digests.push(digest);
    return digests;
  }

  /** Forgets every chunk located in `owner`'s image file (about to be deleted or rewritten). */
  dropImageLocations(owner: string): void {
    for (const [digest, location] of this.inImages)
      if (location.owner === owner) this.inImages.delete(digest);
  }

  /** Moves chunks out of an image file into packs (before that file is deleted). */
  async moveToPacks(digests: readonly string[]): Promise<void> {
    const batch = 1024;
    for (let i = 0; i < digests.length; i += batch) {
      const some = digests.slice(i, i + batch);
      const copies: Buffer[] = [];
      for await (const data of this.readMany(some)) copies.push(data);
      for (const [j, digest] of some.entries()) {
        this.inImages.delete(digest);
        await this.put(digest, copies[j] as Buffer);
      }
    }
    await this.flush();
  }

  private serialize<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task, task);
    this.queue = run.catch(() => {});
    return run;
  }

  /**
   * Queues a write without waiting for it: puts go on verifying and staging while the disk
   * works. Writes run one after another; its failure is reported by the next put or flush.
   */
  private background(task: () => Promise<void>, bytes: number): void {
    this.pendingBytes += bytes;
    this.serialize(task)
      .catch((error: unknown) => {
        this.backgroundError ??= error;
      })
      .finally(() => {
        this.pendingBytes -= bytes;
      });
  }

  /**
   * Seals a pack once its writes are done, without holding up the writes queued after it:
   * the fsync of one pack overlaps with filling the next.
   */
  private sealAfterWrites(pack: OpenPack): void {
    const sealing = this.queue
      .then(() => this.seal(pack))
      .catch((error: unknown) => {
        this.backgroundError ??= error;
      })
      .finally(() => this.sealing.delete(sealing));
    this.sealing.add(sealing);
  }

  private throwBackgroundError(): void {
    const error = this.backgroundError;
    if (error !== undefined) {
      this.backgroundError = undefined;
      throw error;
    }
  }

  /**
   * Verifies `data` against `digest` and stores it unless already stored. The chunk is
   * readable at once; it survives a crash once its pack is sealed (see `flush`).
   */
  async put(digest: string, data: Buffer): Promise<void> {
    verifyChunk(digest, data);
    this.throwBackgroundError();
    // Backpressure: a slow disk slows the sender down instead of filling memory.
    while (this.pendingBytes > MAX_PENDING_WRITE_BYTES) await this.queue;
    const bytes = PACK_RECORD_HEADER_BYTES + data.length;
    if (this.has(digest)) return;
    const pack = this.current ?? (await this.serialize(() => this.startPack()));
    if (this.has(digest)) return;
    if (pack.staged + bytes > pack.staging.length) this.writeStaged(pack);
    const location = { pack: pack.id, offset: pack.size, length: data.length };
    // Records are copied into one contiguous buffer: a writev of thousands of 16 KiB
    // buffers measured ~15x slower than one write of the same bytes.
    const at = pack.staged;
    pack.staging.write(digest, at, DIGEST_BYTES, "hex");
    pack.staging.writeUInt32BE(data.length, at + DIGEST_BYTES);
    data.copy(pack.staging, at + PACK_RECORD_HEADER_BYTES);
    pack.staged += bytes;
    pack.size += bytes;
    pack.entries.push([digest, location]);
    this.index.set(digest, location);
    this.unwritten.set(digest, pack.staging.subarray(at, at + bytes));
    if (pack.size >= this.sealBytes) this.sealInBackground(pack);
  }

  /** Seals the open pack: every chunk put before this call survives a crash afterwards. */
  async flush(): Promise<void> {
    const pack = this.current;
    if (pack) this.sealInBackground(pack);
    await this.queue;
    await Promise.all(this.sealing);
    this.throwBackgroundError();
  }

  private sealInBackground(pack: OpenPack): void {
    if (this.current === pack) this.current = undefined;
    this.writeStaged(pack);
    this.sealAfterWrites(pack);
  }

  private async startPack(): Promise<OpenPack> {
    if (this.current) return this.current;
    const id = this.nextPackId++;
    const file = await open(join(this.dir, `${packName(id)}.pack.tmp`), "w+");
    this.unsealedPacks.set(id, file);
    this.current = {
      id,
      file,
      size: 0,
      entries: [],
      staging: this.spareStaging.pop() ?? Buffer.allocUnsafe(WRITE_BATCH_BYTES),
      staged: 0,
      writeOffset: 0,
      failed: false,
    };
    return this.current;
  }

  /** Hands the staged records to a background write and starts a fresh staging buffer. */
  private writeStaged(pack: OpenPack): void {
    if (pack.staged === 0) return;
    const buffer = pack.staging.subarray(0, pack.staged);
    const offset = pack.writeOffset;
    pack.writeOffset += buffer.length;
    // Records still referenced from `unwritten` keep the old buffer alive until written.
    const full = pack.staging;
    pack.staging = this.spareStaging.pop() ?? Buffer.allocUnsafe(WRITE_BATCH_BYTES);
    pack.staged = 0;
    this.background(async () => {
      if (pack.failed) return;
      try {
        let written = 0;
        while (written < buffer.length) {
          written += (await pack.file.write(buffer, written, buffer.length - written, offset + written))
            .bytesWritten;
        }
      } catch (error) {
        await this.discard(pack);
        throw asStoreError(error, `pack ${packName(pack.id)}`);
      }
      const end = offset + buffer.length;
      for (let e = pack.entries.length - 1; e >= 0; e--) {
        const [digest, location] = pack.entries[e] as [string, ChunkLocation];
        if (location.offset >= end) continue;
        if (location.offset < offset) break;
        this.unwritten.delete(digest);
      }
      // Nothing refers to the buffer any more (readers of `unwritten` get copies).
      if (this.spareStaging.length < 8) this.spareStaging.push(full);
    }, buffer.length);
  }

  private async seal(pack: OpenPack): Promise<void> {
    if (pack.failed) return;
    const base = join(this.dir, packName(pack.id));
    try {
      await pack.file.sync();
      await writeFileDurably(`${base}.idx.tmp`, encodePackIndex(pack.entries));
      await rename(`${base}.pack.tmp`, `${base}.pack`);
      await rename(`${base}.idx.tmp`, `${base}.idx`);
      await syncDirectory(this.dir);
    } catch (error) {
      await this.discard(pack);
      throw asStoreError(error, `pack ${packName(pack.id)}`);
    }
    this.sealedPacks.set(pack.id, pack.file);
    this.unsealedPacks.delete(pack.id);
  }

  /**
   * Drops an unsealed pack after a write error: its chunks are forgotten (a later pull or
   * upload asks for them again), nothing half-written remains, later puts start a new pack.
   */
  private async discard(pack: OpenPack): Promise<void> {
    pack.failed = true;
    this.unsealedPacks.delete(pack.id);
    if (this.current === pack) this.current = undefined;
    for (const [digest, location] of pack.entries) {
      if (this.index.get(digest) === location) this.index.delete(digest);
      this.unwritten.delete(digest);
    }
    await pack.file.close().catch(() => {});
    const base = join(this.dir, packName(pack.id));
    await rm(`${base}.pack.tmp`, { force: true });
    await rm(`${base}.idx.tmp`, { force: true });
  }

  private fileOf(pack: number): FileHandle {
    const file = this.sealedPacks.get(pack) ?? this.unsealedPacks.get(pack);
    if (!file) throw new StoreError("CHUNK_MISSING", `pack ${pack} is not open`);
    return file;
  }

  async read(digest: string): Promise<Buffer> {
    for await (const chunk of this.readMany([digest])) return chunk;
    throw new StoreError("CHUNK_MISSING", `chunk ${digest} is not stored`);
  }

  /** Yields the data of each chunk, in the order given, from reads planned by `planReads`. */
  async *readMany(digests: readonly string[]): AsyncGenerator<Buffer> {
    const ranges = this.planReads(digests);
    const read = async (range: ReadRange): Promise<Buffer> => {
      const held = range.count === 1 ? this.unwritten.get(range.first) : undefined;
      // A copy: the staging buffer it lies in is reused once written.
      const buffer = held ? Buffer.from(held) : await this.readRange(range, Buffer.allocUnsafe(range.length));
      return buffer;
    };
    for await (const [range, buffer] of readAhead(ranges, read)) {
      if (range.lengths) {
        let from = 0;
        for (const length of range.lengths) {
          yield buffer.subarray(from, from + length);
          from += length;
        }
        continue;
      }
      let at = 0;
      while (at < buffer.length) {
        const length = buffer.readUInt32BE(at + DIGEST_BYTES);
        at += PACK_RECORD_HEADER_BYTES;
        yield buffer.subarray(at, at + length);
        at += length;
      }
    }
  }

  /**
   * The chunks' data in the order given, concatenated, in buffers of READ_BUFFER_BYTES that
   * `take` hands out (from a pool: a sender gives each back once the socket has it). Each
   * yielded view holds whole chunks; the next buffer is being read before a view is yielded.
   * Consecutive reads share a buffer while they fit: the scattered chunks of a delta leave in
   * a few large pieces, not in one buffer (and one socket write) each.
   */
  async *readData(digests: readonly string[], take: () => Buffer): AsyncGenerator<Buffer> {
    const groups: ReadRange[][] = [];
    let group: ReadRange[] = [];
    let groupBytes = 0;
    for (const range of this.planReads(digests)) {
      if (group.length > 0 && groupBytes + range.length > READ_BUFFER_BYTES) {
        groups.push(group);
        group = [];
        groupBytes = 0;
      }
      group.push(range);
      groupBytes += range.length;
    }
    if (group.length > 0) groups.push(group);

    const fill = async (ranges: ReadRange[]): Promise<Buffer> => {
      const buffer = take();
      let at = 0;
      const reads: Array<Promise<unknown>> = [];
      for (const range of ranges) {
        const held = range.count === 1 ? this.unwritten.get(range.first) : undefined;
        if (held) held.copy(buffer, at);
        else reads.push(this.readRange(range, buffer.subarray(at)));
        at += range.length;
      }
      await Promise.all(reads);
      // Records from a pack: their data is moved together over the headers.
      at = 0;
      let out = 0;
      for (const range of ranges) {
        if (range.lengths) {
          if (out !== at) buffer.copyWithin(out, at, at + range.length);
          out += range.length;
          at += range.length;
          continue;
        }
        const end = at + range.length;
        while (at < end) {
          const length = buffer.readUInt32BE(at + DIGEST_BYTES);
          at += PACK_RECORD_HEADER_BYTES;
          buffer.copyWithin(out, at, at + length);
          out += length;
          at += length;
        }
      }
      return buffer.subarray(0, out);
    };
    for await (const [, data] of readAhead(groups, fill)) yield data;
  }

  /**
   * Groups the chunks into reads: adjacent chunks of one image are one read of their data
   * (`lengths` set); adjacent records of one pack are one read of whole records. A chunk still
   * staged for writing is a range of its own.
   */
  private planReads(digests: readonly string[]): ReadRange[] {
    const ranges: ReadRange[] = [];
    for (const digest of digests) {
      const location = this.index.get(digest);
      const last = ranges.at(-1);
      if (!location) {
        const inImage = this.inImages.get(digest);
        if (!inImage) throw new StoreError("CHUNK_MISSING", `chunk ${digest} is not stored`);
        if (
          last?.lengths &&
          last.file === inImage.file &&
          last.offset + last.length === inImage.offset &&
          last.length + inImage.length <= READ_BUFFER_BYTES
        ) {
          last.length += inImage.length;
          last.count++;
          last.lengths.push(inImage.length);
        } else {
          ranges.push({
            file: inImage.file,
            offset: inImage.offset,
            length: inImage.length,
            first: digest,
            count: 1,
            lengths: [inImage.length],
          });
        }
        continue;
      }
      const bytes = PACK_RECORD_HEADER_BYTES + location.length;
      if (
        last &&
        !last.lengths &&
        !this.unwritten.has(digest) &&
        !this.unwritten.has(last.first) &&
        last.pack === location.pack &&
        last.offset + last.length === location.offset &&
        last.length + bytes <= READ_BUFFER_BYTES
      ) {
        last.length += bytes;
        last.count++;
      } else {
        ranges.push({ pack: location.pack, offset: location.offset, length: bytes, first: digest, count: 1 });
      }
    }
    return ranges;
  }

  /** Reads a planned range into the start of `buffer`. */
  private async readRange(range: ReadRange, buffer: Buffer): Promise<Buffer> {
    const file = range.file ?? this.fileOf(range.pack as number);
    if ((await readFully(file, buffer, range.length, range.offset)) < range.length) {
      throw new StoreError(
        "CHUNK_MISSING",
        `${range.file ? "an image" : `pack ${range.pack}`} is shorter than its index`,
      );
    }
    return buffer;
  }

  /**
   * Removes the chunks in `dead` by rewriting every pack that holds one: its live chunks are
   * copied into a new sealed pack before the old pack and index are deleted, so a crash in
   * between leaves duplicates (harmless), never a loss.
   */
  async remove(dead: ReadonlySet<string>): Promise<{ chunksRemoved: number; bytesReclaimed: number }> {
    await this.flush();
    const affected = new Set<number>();
    for (const digest of dead) {
      const location = this.index.get(digest);
      if (location) affected.add(location.pack);
    }
    let chunksRemoved = 0;
    let bytesReclaimed = 0;
    for (const pack of affected) {
      const live: string[] = [];
      for (const [digest, location] of this.index) {
        if (location.pack !== pack) continue;
        if (dead.has(digest)) {
          chunksRemoved++;
          bytesReclaimed += location.length;
        } else {
          live.push(digest);
        }
      }
      const copies: Array<[string, Buffer]> = [];
      let i = 0;
      for await (const data of this.readMany(live)) copies.push([live[i++] as string, data]);
      for (const [digest] of copies) this.index.delete(digest);
      for (const [digest, data] of copies) await this.put(digest, data);
      await this.flush();
      for (const digest of dead) if (this.index.get(digest)?.pack === pack) this.index.delete(digest);
      const base = join(this.dir, packName(pack));
      await unlink(`${base}.idx`);
      await syncDirectory(this.dir);
      await this.sealedPacks.get(pack)?.close();
      this.sealedPacks.delete(pack);
      await unlink(`${base}.pack`);
    }
    return { chunksRemoved, bytesReclaimed };
  }

  async close(): Promise<void> {
    await this.flush().catch(() => {});
    for (const file of this.sealedPacks.values()) await file.close().catch(() => {});
    this.sealedPacks.clear();
  }
}

/** One read: adjacent chunks of an image file (`file`, `lengths`) or adjacent records of a pack. */
interface ReadRange {
  file?: FileHandle;
  pack?: number;
  offset: number;
  length: number;
  first: string;
  count: number;
  /** Set for image ranges: the data lengths of the chunks, in order. */
  lengths?: number[];
}

/** Runs `read` over `items` in order, the next one always issued before the current is yielded. */
async function* readAhead<I, T>(items: readonly I[], read: (item: I) => Promise<T>): AsyncGenerator<[I, T]> {
  let next = items[0] !== undefined ? read(items[0]) : undefined;
  try {
    for (let i = 0; i < items.length; i++) {
      const value = await (next as Promise<T>);
      next = i + 1 < items.length ? read(items[i + 1] as I) : undefined;
      yield [items[i] as I, value];
    }
  } finally {
    // A reader that stops early leaves at most one read in flight; its failure is of no interest.
    next?.catch(() => {});
  }
}
