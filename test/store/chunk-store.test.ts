import { open, readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { chunkLengths } from "../../common/image-format/chunking.ts";
import { sha256Hex } from "../../common/image-format/digest.ts";
import { ChunkStore, READ_BUFFER_BYTES } from "../../regional-manager/store/chunk-store.ts";
import { StoreError } from "../../regional-manager/store/errors.ts";
import { seededBytes, temporaryDir } from "../support/transfer.ts";

function chunksOf(data: Buffer): Array<[string, Buffer]> {
  const out: Array<[string, Buffer]> = [];
  let at = 0;
  for (const length of chunkLengths(data)) {
    const chunk = data.subarray(at, at + length);
    out.push([sha256Hex(chunk), chunk]);
    at += length;
  }
  return out;
}

describe("ChunkStore", () => {
  let dir: Awaited<ReturnType<typeof temporaryDir>>;
  beforeEach(async () => {
    dir = await temporaryDir("chunk-store");
  });
  afterEach(async () => {
    await dir.remove();
  });

  it("rejects a chunk that does not match its digest and stores nothing", async () => {
    const store = await ChunkStore.open(dir.path);
    const data = seededBytes(20_000, 1);
    const digest = sha256Hex(data);
    const corrupt = Buffer.from(data);
    corrupt[100] = (corrupt[100] as number) ^ 0xff;
    await expect(store.put(digest, corrupt)).rejects.toMatchObject({ code: "CHUNK_DIGEST_MISMATCH" });
    expect(store.has(digest)).toBe(false);
    await store.flush();
    expect(store.chunkCount).toBe(0);
    await store.close();
  });

  it("stores each chunk once, reads it back, and keeps it across a reopen", async () => {
    const chunks = chunksOf(seededBytes(3 << 20, 2));
    const store = await ChunkStore.open(dir.path, { sealBytes: 1 << 20 });
    for (const [digest, data] of chunks) await store.put(digest, data);
    for (const [digest, data] of chunks) await store.put(digest, data);
    expect(store.chunkCount).toBe(chunks.length);
    for await (const _ of store.readMany([])) throw new Error("nothing to read");
    let i = 0;
    for await (const data of store.readMany(chunks.map(([d]) => d))) {
      expect(data.equals((chunks[i++] as [string, Buffer])[1])).toBe(true);
    }
    await store.close();
    const names = await readdir(dir.path);
    expect(names.filter((n) => n.endsWith(".pack")).length).toBeGreaterThanOrEqual(3);
    expect(names.filter((n) => n.endsWith(".tmp"))).toEqual([]);

    const reopened = await ChunkStore.open(dir.path);
    expect(reopened.chunkCount).toBe(chunks.length);
    const [digest, data] = chunks[7] as [string, Buffer];
    expect((await reopened.read(digest)).equals(data)).toBe(true);
    expect(reopened.storedBytes()).toBe(3 << 20);
    await reopened.close();
  });

  it("after a crash, forgets unsealed packs and leftovers instead of trusting them", async () => {
    const chunks = chunksOf(seededBytes(1 << 20, 3));
    const store = await ChunkStore.open(dir.path);
    for (const [digest, data] of chunks.slice(0, 10)) await store.put(digest, data);
    await store.flush();
    // Not flushed: as if the process died here (the handle is leaked on purpose).
    for (const [digest, data] of chunks.slice(10)) await store.put(digest, data);
    // A pack renamed but whose index never was, and a half-written index.
    await writeFile(join(dir.path, "pack-00000090.pack"), seededBytes(5000, 4));
    await writeFile(join(dir.path, "pack-00000091.idx.tmp"), seededBytes(44, 5));

    const reopened = await ChunkStore.open(dir.path);
    expect(reopened.chunkCount).toBe(10);
    for (const [digest] of chunks.slice(10)) expect(reopened.has(digest)).toBe(false);
    const names = await readdir(dir.path);
    expect(names.some((n) => n.endsWith(".tmp") || n === "pack-00000090.pack")).toBe(false);
    await reopened.close();
  });

  it("serves the data of chunks from an image, packs and staging, concatenated, in lent buffers", async () => {
    // 3,000 adjacent 100-byte chunks in an image: reads of up to READ_BUFFER_BYTES each.
    const data = seededBytes(300_000, 7);
    const path = join(dir.path, "image.img");
    await writeFile(path, data);
    const file = await open(path, "r");
    const store = await ChunkStore.open(join(dir.path, "store"));
    const digests: string[] = [];
    for (let at = 0; at < data.length; at += 100) {
      const digest = sha256Hex(data.subarray(at, at + 100));
      digests.push(digest);
      store.addImageLocation(digest, { file, offset: at, length: 100, owner: "img@1" });
    }
    // Chunks in a sealed pack, and one still staged for writing.
    const packed = chunksOf(seededBytes(200_000, 8));
    for (const [digest, chunk] of packed) await store.put(digest, chunk);
    await store.flush();
    const [[stagedDigest, staged]] = chunksOf(seededBytes(20_000, 9)) as [[string, Buffer]];
    await store.put(stagedDigest, staged);
    const order = [
      ...digests.slice(0, 1500),
      ...packed.map(([d]) => d),
      stagedDigest,
      ...digests.slice(1500),
    ];
    const expected = Buffer.concat([
      data.subarray(0, 150_000),
      ...packed.map(([, chunk]) => chunk),
      staged,
      data.subarray(150_000),
    ]);
    const lent: Buffer[] = [];
    const pieces: Buffer[] = [];
    for await (const piece of store.readData(order, () => {
      const buffer = Buffer.alloc(READ_BUFFER_BYTES);
      lent.push(buffer);
      return buffer;
    })) {
      expect(lent.some((buffer) => buffer.buffer === piece.buffer)).toBe(true);
      pieces.push(Buffer.from(piece));
    }
    expect(Buffer.concat(pieces).equals(expected)).toBe(true);
    await expect(async () => {
      for await (const _ of store.readData(["0".repeat(64)], () => Buffer.alloc(READ_BUFFER_BYTES))) {
        /* nothing */
      }
    }).rejects.toMatchObject({ code: "CHUNK_MISSING" });
    await store.close();
    await file.close();
  });

  it("serves chunks not yet written to disk", async () => {
    const store = await ChunkStore.open(dir.path);
    const [[digest, data]] = chunksOf(seededBytes(30_000, 6)) as [[string, Buffer]];
    await store.put(digest, data);
    expect((await store.read(digest)).equals(data)).toBe(true);
    await store.close();
  });

  it("removes dead chunks by rewriting their packs and keeps every live one", async () => {
    const chunks = chunksOf(seededBytes(2 << 20, 7));
    const store = await ChunkStore.open(dir.path, { sealBytes: 512 << 10 });
    for (const [digest, data] of chunks) await store.put(digest, data);
    await store.flush();
    const dead = new Set(chunks.filter((_, i) => i % 3 === 0).map(([d]) => d));
    const deadBytes = chunks.filter(([d]) => dead.has(d)).reduce((sum, [, data]) => sum + data.length, 0);
    const result = await store.remove(dead);
    expect(result).toEqual({ chunksRemoved: dead.size, bytesReclaimed: deadBytes });
    await store.close();

    const reopened = await ChunkStore.open(dir.path);
    expect(reopened.chunkCount).toBe(chunks.length - dead.size);
    for (const [digest, data] of chunks) {
      if (dead.has(digest)) expect(reopened.has(digest)).toBe(false);
      else expect((await reopened.read(digest)).equals(data)).toBe(true);
    }
    let packBytes = 0;
    for (const name of await readdir(dir.path)) {
      if (name.endsWith(".pack")) packBytes += (await stat(join(dir.path, name))).size;
    }
    expect(packBytes).toBeLessThan((2 << 20) - deadBytes + chunks.length * 36 + 1);
    await reopened.close();
  });

  it("takes puts from concurrent streams", async () => {
    const chunks = chunksOf(seededBytes(6 << 20, 8));
    const store = await ChunkStore.open(dir.path, { sealBytes: 1 << 20 });
    const half = Math.floor(chunks.length / 2);
    const stream = async (part: Array<[string, Buffer]>) => {
      for (const [digest, data] of part) await store.put(digest, data);
    };
    await Promise.all([
      stream(chunks.slice(0, half)),
      stream(chunks.slice(half)),
      stream(chunks.slice(half - 20)),
    ]);
    await store.flush();
    await store.close();
    const reopened = await ChunkStore.open(dir.path);
    expect(reopened.chunkCount).toBe(chunks.length);
    let i = 0;
    for await (const data of reopened.readMany(chunks.map(([d]) => d))) {
      expect(sha256Hex(data)).toBe((chunks[i++] as [string, Buffer])[0]);
    }
    await reopened.close();
  });

  it("reports a missing chunk as such", async () => {
    const store = await ChunkStore.open(dir.path);
    await expect(store.read("0".repeat(64))).rejects.toBeInstanceOf(StoreError);
    await store.close();
  });
});
