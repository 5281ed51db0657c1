// Image writes that bypass the page cache: split at page boundaries, byte-exact either way.
import { open, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  alignedBuffer,
  DIRECT_ALIGNMENT,
  DirectWriter,
  openDirectReader,
  readInto,
  viewFor,
  wholeBuffer,
} from "../../regional-manager/store/direct-io.ts";
import { seededBytes, temporaryDir } from "../support/transfer.ts";

const FILE_BYTES = 4 << 20;

/** Writes at offsets and lengths that start and end anywhere, some spanning many pages. */
const WRITES: ReadonlyArray<readonly [offset: number, length: number]> = [
  [0, 300_000], // starts on a page
  [300_000, 77], // too short for a page of its own
  [300_077, 1_000_003], // both ends inside a page
  [1_400_000, 4096 * 40], // its middle is shorter than a direct write is worth
  [2_097_152, 1 << 20], // starts and ends on pages
  [3_200_001, FILE_BYTES - 3_200_001], // ends at the end of the file
];

describe("DirectWriter", () => {
  let dir: Awaited<ReturnType<typeof temporaryDir>>;
  beforeEach(async () => {
    dir = await temporaryDir("direct-io");
  });
  afterEach(async () => {
    await dir.remove();
  });

  async function sparseFile(name: string) {
    const path = join(dir.path, name);
    const file = await open(path, "w+");
    await file.truncate(FILE_BYTES);
    return { path, file };
  }

  it("writes the page-aligned middle of each write directly, its edges through the page cache", async () => {
    const { path, file } = await sparseFile("image");
    const writer = await DirectWriter.open(path, file, { direct: true });
    expect(writer.usesDirect).toBe(true);
    const expected = Buffer.alloc(FILE_BYTES);
    let direct = 0;
    let total = 0;
    for (const [offset, length] of WRITES) {
      total += length;
      const data = seededBytes(length, offset);
      data.copy(expected, offset);
      // As a run is placed: its first byte at the distance from a page its offset has.
      const view = viewFor(alignedBuffer(length + DIRECT_ALIGNMENT), offset);
      data.copy(view);
      await writer.write(view, 0, length, offset);
      const start = Math.ceil(offset / DIRECT_ALIGNMENT) * DIRECT_ALIGNMENT;
      const stop = Math.floor((offset + length) / DIRECT_ALIGNMENT) * DIRECT_ALIGNMENT;
      if (stop - start >= 64 << 10) direct += stop - start;
    }
    expect(writer.directBytes).toBe(direct);
    expect(writer.directBytes).toBeGreaterThan(total * 0.8);
    expect(writer.cachedBytes).toBe(total - direct);
    await writer.close();
    await file.sync();
    expect((await readFile(path)).equals(expected)).toBe(true);
    await file.close();
  });

  it("writes a buffer of unknown alignment, or without direct writes, through the page cache", async () => {
    for (const direct of [true, false]) {
      const { path, file } = await sparseFile(`image-${direct}`);
      const writer = await DirectWriter.open(path, file, { direct });
      expect(writer.usesDirect).toBe(direct);
      const data = seededBytes(FILE_BYTES, 5);
      // Buffer.alloc's memory is aligned or not by chance; the writer cannot know, so never direct.
      await writer.write(Buffer.from(data), 0, FILE_BYTES, 0);
      expect(writer.directBytes).toBe(0);
      expect(writer.cachedBytes).toBe(FILE_BYTES);
      await writer.close();
      expect((await readFile(path)).equals(data)).toBe(true);
      await file.close();
    }
  });

  it("replaces what the page cache holds of the file: a later read sees the direct write", async () => {
    const { path, file } = await sparseFile("cached");
    const old = seededBytes(FILE_BYTES, 7);
    await file.write(old, 0, FILE_BYTES, 0);
    expect((await readFile(path)).equals(old)).toBe(true); // cached now
    const writer = await DirectWriter.open(path, file, { direct: true });
    const fresh = seededBytes(1 << 20, 8);
    const view = viewFor(alignedBuffer((1 << 20) + DIRECT_ALIGNMENT), 12_345);
    fresh.copy(view);
    await writer.write(view, 0, fresh.length, 12_345);
    expect(writer.directBytes).toBeGreaterThan(0);
    fresh.copy(old, 12_345);
    expect((await readFile(path)).equals(old)).toBe(true);
    await writer.close();
    await file.close();
  });

  it("reads any range of a file into a view placed by its offset, past the page cache or through it", async () => {
    const path = join(dir.path, "base");
    const content = seededBytes(FILE_BYTES - 1000, 9); // ends inside a page
    await writeFile(path, content);
    const file = await open(path, "r");
    const direct = await openDirectReader(path);
    expect(direct).toBeDefined();
    expect(await openDirectReader(join(dir.path, "missing"))).toBeUndefined();
    const ranges: ReadonlyArray<readonly [number, number]> = [
      [0, 8192],
      [5, 1_000_000],
      [4096 * 100 + 7, 70_001],
      [content.length - 5000, 5000], // to the end of the file
      [content.length - 5000, 9000], // past it: only what there is
    ];
    // Read direct, the cached descriptor is never used: a closed one proves it.
    const closed = await open(path, "r");
    await closed.close();
    for (const [via, cached] of [
      [direct, closed],
      [undefined, file],
    ] as const) {
      for (const [position, length] of ranges) {
        const whole = alignedBuffer((1 << 20) + 2 * DIRECT_ALIGNMENT);
        const view = viewFor(whole, position);
        // Bytes of the view past the range stay as they were.
        view.fill(0xee);
        const read = await readInto(view, length, position, cached, via);
        const expected = content.subarray(position, position + length);
        expect(read).toBe(expected.length);
        expect(view.subarray(0, read).equals(expected)).toBe(true);
      }
    }
    // A view whose place on its page does not match the offset is read through the page cache.
    const unplaced = alignedBuffer(1 << 20).subarray(1);
    expect(await readInto(unplaced, 4096, 8192, file, direct)).toBe(4096);
    expect(unplaced.subarray(0, 4096).equals(content.subarray(8192, 12288))).toBe(true);
    await direct?.close();
    await file.close();
  });

  it("writes from shared aligned memory, which another thread can read, directly too", async () => {
    const shared = alignedBuffer((1 << 20) + DIRECT_ALIGNMENT, { shared: true });
    expect(shared.buffer).toBeInstanceOf(SharedArrayBuffer);
    const { path, file } = await sparseFile("shared");
    const writer = await DirectWriter.open(path, file, { direct: true });
    const offset = 3 * DIRECT_ALIGNMENT + 77;
    const data = seededBytes(1 << 20, 12);
    const view = viewFor(shared, offset);
    data.copy(view);
    await writer.writeRun(view, 0, data.length, offset);
    // Pieces end on pages: only a page at each end of the run goes through the page cache.
    expect(writer.cachedBytes).toBeLessThan(2 * DIRECT_ALIGNMENT);
    expect(writer.directBytes + writer.cachedBytes).toBe(data.length);
    await writer.close();
    expect((await readFile(path)).subarray(offset, offset + data.length).equals(data)).toBe(true);
    await file.close();
  });

  it("finds the whole aligned buffer a view belongs to, and places views by their file offset", () => {
    const whole = alignedBuffer(1 << 20);
    expect(whole.length % (64 << 10)).toBe(0);
    const view = viewFor(whole, 3 * DIRECT_ALIGNMENT + 100);
    expect(view.byteOffset - whole.byteOffset).toBe(100);
    expect(wholeBuffer(view).length).toBe(whole.length);
    expect(wholeBuffer(view).buffer).toBe(whole.buffer);
    const other = Buffer.alloc(10);
    expect(wholeBuffer(other)).toBe(other);
  });
});
