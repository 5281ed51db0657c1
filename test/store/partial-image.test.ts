import { open, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { chunkFile } from "../../common/image-format/chunk-file.ts";
import { sha256Hex } from "../../common/image-format/digest.ts";
import { MAX_CHUNK_LENGTH, type Manifest } from "../../common/image-format/manifest.ts";
import { DIRECT_ALIGNMENT } from "../../regional-manager/store/direct-io.ts";
import { copySpans, layoutOf, sameOffsetPositions } from "../../regional-manager/store/image-layout.ts";
import { ImageStore } from "../../regional-manager/store/image-store.ts";
import { PartialImage } from "../../regional-manager/store/partial-image.ts";
import { type ChunkSequence, PartialImageWriter } from "../../regional-manager/store/partial-image-writer.ts";
import { seededBytes, temporaryDir } from "../support/transfer.ts";

/** The data chunks of an image with their offsets, as a peer would send them. */
function dataChunks(
  manifest: Manifest,
  data: Buffer,
): Array<{ digest: string; offset: number; data: Buffer }> {
  const out: Array<{ digest: string; offset: number; data: Buffer }> = [];
  let at = 0;
  for (const chunk of manifest.chunks) {
    if (!chunk.zero)
      out.push({ digest: chunk.digest, offset: at, data: data.subarray(at, at + chunk.length) });
    at += chunk.length;
  }
  return out;
}

/** Receives chunks as a pull does: verified, written in place into the pending image. */
async function receive(
  store: ImageStore,
  imageId: string,
  version: number,
  chunks: Array<{ digest: string; data: Buffer }>,
): Promise<void> {
  const writer = await store.receiver(imageId, version);
  for (const chunk of chunks) await writer.receive(chunk.digest, chunk.data);
  await writer.flush();
}

async function allChunksMatch(store: ImageStore): Promise<number> {
  const digests = [...store.chunks.digests()];
  let i = 0;
  for await (const data of store.chunks.readMany(digests)) expect(sha256Hex(data)).toBe(digests[i++]);
  return i;
}

describe("ImageStore receiving pulled chunks in place", () => {
  let dir: Awaited<ReturnType<typeof temporaryDir>>;
  beforeEach(async () => {
    dir = await temporaryDir("partial-image");
  });
  afterEach(async () => {
    await dir.remove();
  });

  async function image(name: string, data: Buffer): Promise<Manifest> {
    await writeFile(join(dir.path, name), data);
    return chunkFile(join(dir.path, name));
  }

  /** A store holding v1 (pulled, available), with the manifests of both versions. */
  async function holdingFirstOf(v1: Buffer, v2: Buffer) {
    const m1 = await image("v1.raw", v1);
    const m2 = await image("v2.raw", v2);
    const store = await ImageStore.open(join(dir.path, "store"));
    await store.beginVersion("img-a", 1, m1);
    await receive(store, "img-a", 1, dataChunks(m1, v1));
    await store.completeVersion("img-a", 1);
    return { store, m1, m2 };
  }

  it("writes each chunk once, into the image that becomes the version's, sparse, with no pack", async () => {
    const data = seededBytes(6 << 20, 61);
    data.fill(0, 2 << 20, 4 << 20);
    const manifest = await image("v1.raw", data);
    const store = await ImageStore.open(join(dir.path, "store"));
    await store.beginVersion("img-a", 1, manifest);
    await receive(store, "img-a", 1, dataChunks(manifest, data));
    expect(store.missingChunks("img-a", 1)).toEqual([]);
    const record = await store.completeVersion("img-a", 1);
    expect(record).toMatchObject({ state: "available", digest: sha256Hex(data) });
    const path = store.imagePath(record.localId as string);
    expect((await readFile(path)).equals(data)).toBe(true);
    expect((await stat(path)).blocks * 512).toBeLessThan(data.length - (1 << 20));
    // Stored once: no pack holds the pulled chunks, the image does.
    expect((await readdir(join(dir.path, "store", "chunks"))).filter((n) => n.endsWith(".pack"))).toEqual([]);
    expect(await readdir(join(dir.path, "store", "versions", "img-a"))).not.toContain("1.partial");
    await store.close();

    // After a restart the image still serves its chunks, byte-exact.
    const reopened = await ImageStore.open(join(dir.path, "store"));
    expect(reopened.missingChunks("img-a", 1)).toEqual([]);
    expect(await allChunksMatch(reopened)).toBe(
      new Set(dataChunks(manifest, data).map((c) => c.digest)).size,
    );
    await reopened.close();
  });

  it("starts a version updated in place from its base: only the changed chunks are left to receive", async () => {
    const v1 = seededBytes(8 << 20, 64);
    v1.fill(0, 3 << 20, 4 << 20);
    const v2 = Buffer.from(v1);
    for (const at of [100_000, 2_500_000, 5_000_000, 7_900_000]) seededBytes(4096, at).copy(v2, at);
    const { store, m1, m2 } = await holdingFirstOf(v1, v2);

    await store.beginVersion("img-a", 2, m2);
    const all = dataChunks(m2, v2);
    const changed = all.filter((c) => !m1.chunks.some((k) => k.digest === c.digest));
    expect(changed.length).toBeGreaterThan(0);
    // Receiving starts with a copy of every chunk v1 holds at the same offset, before any chunk
    // arrives; waiting for the writes waits for the copy too.
    await store.startReceiving("img-a", 2);
    await store.drainWrites("img-a", 2);
    const partial = await readFile(join(dir.path, "store", "versions", "img-a", "2.partial"));
    const kept = all.filter((c) => !changed.includes(c));
    for (const chunk of kept)
      expect(partial.subarray(chunk.offset, chunk.offset + chunk.data.length).equals(chunk.data)).toBe(true);
    for (const chunk of changed)
      expect(partial.subarray(chunk.offset, chunk.offset + chunk.data.length).equals(chunk.data)).toBe(false);

    await receive(store, "img-a", 2, changed);
    const record = await store.completeVersion("img-a", 2);
    const path = store.imagePath(record.localId as string);
    expect((await readFile(path)).equals(v2)).toBe(true);
    // The zero run stays a hole in the new version too.
    expect((await stat(path)).blocks * 512).toBeLessThan(v2.length - (512 << 10));
    await store.close();
  });

  it("receives while the base is copied; a base that cannot be read leaves completion to fill from the store", async () => {
    const v1 = seededBytes(12 << 20, 65);
    const v2 = Buffer.from(v1);
    for (let at = 1 << 20; at < v2.length; at += 3 << 20) seededBytes(4096, at).copy(v2, at);
    const m1 = await image("v1.raw", v1);
    const m2 = await image("v2.raw", v2);
    const store = await ImageStore.open(join(dir.path, "store"));
    for (const chunk of dataChunks(m1, v1)) await store.chunks.put(chunk.digest, chunk.data);
    await store.chunks.flush();
    // The base's file is closed and gone before the copy's first read (as when its version is
    // deleted meanwhile): the copy stops, and nothing it did not write may be missing at the end.
    const base = await open(join(dir.path, "v1.raw"), "r");
    await base.close();
    const partial = await PartialImage.open(join(dir.path, "v2.partial"), m2, "img-a@2", store.chunks, {
      file: base,
      path: join(dir.path, "deleted.raw"),
      manifest: m1,
    });
    const writer = new PartialImageWriter(partial);
    for (const chunk of dataChunks(m2, v2).filter((c) => !store.chunks.has(c.digest)))
      await writer.receive(chunk.digest, chunk.data);
    await writer.flush();
    expect(await partial.complete()).toBe(sha256Hex(v2));
    expect((await readFile(join(dir.path, "v2.partial"))).equals(v2)).toBe(true);
    await partial.close();
    await store.close();
  });

  it("writes the runs of an image verified by its manifest past the page cache, a base copy through it", async () => {
    const v1 = seededBytes(12 << 20, 67);
    const v2 = Buffer.from(v1);
    for (let at = 777_777; at < v2.length; at += 1_234_567) seededBytes(4096, at).copy(v2, at);
    const m1 = await image("v1.raw", v1);
    const m2 = await image("v2.raw", v2);
    const store = await ImageStore.open(join(dir.path, "store"));
    const verified = { hashWhole: false };

    // A first pull: the body arrives in the runs' buffers, placed so their pages can go direct.
    const first = await PartialImage.open(
      join(dir.path, "v1.partial"),
      m1,
      "img-a@1",
      store.chunks,
      undefined,
      verified,
    );
    const chunks = dataChunks(m1, v1);
    const receiver = new PartialImageWriter(first);
    const sequence = receiver.sequence(
      chunks.map((c) => c.digest),
      () => {},
    );
    feed(sequence, Buffer.concat(chunks.map((c) => c.data)), 65_536);
    await receiver.flush();
    expect(await first.complete()).toBeUndefined();
    expect((await readFile(join(dir.path, "v1.partial"))).equals(v1)).toBe(true);
    expect(first.writes.usesDirect).toBe(true);
    expect(first.writes.directBytes).toBeGreaterThan(v1.length * 0.9);
    // Through the page cache go only the pages at each run's two ends (two runs here), not one at
    // every 1 MiB piece of a run.
    expect(first.writes.cachedBytes).toBeLessThanOrEqual(2 * 2 * DIRECT_ALIGNMENT);

    // An update: its base copy is read direct and written through the page cache (see
    // copyFromBase), like the changed chunks, which are short runs.
    const base = await open(join(dir.path, "v1.raw"), "r");
    const second = await PartialImage.open(
      join(dir.path, "v2.partial"),
      m2,
      "img-a@2",
      store.chunks,
      { file: base, path: join(dir.path, "v1.raw"), manifest: m1 },
      verified,
    );
    const writer = new PartialImageWriter(second);
    for (const chunk of dataChunks(m2, v2).filter((c) => !m1.chunks.some((k) => k.digest === c.digest)))
      await writer.receive(chunk.digest, chunk.data);
    await writer.flush();
    await second.complete();
    expect((await readFile(join(dir.path, "v2.partial"))).equals(v2)).toBe(true);
    expect(second.writes.directBytes).toBe(0);
    expect(second.writes.cachedBytes).toBeGreaterThan(v2.length * 0.9);
    await base.close();
    await first.close();
    await second.close();
    await store.close();
  });

  it("finds the positions whose chunk sits at the same offset in the base", () => {
    const chunk = (digest: string, length: number, zero = false) => ({
      digest: digest.repeat(64),
      length,
      zero,
    });
    const base: Manifest = {
      size: 40,
      digest: "0".repeat(64),
      chunks: [chunk("a", 10), chunk("b", 10), chunk("0", 10, true), chunk("d", 10)],
    };
    const next: Manifest = {
      size: 45,
      digest: "1".repeat(64),
      // a: same offset; x: changed; zero: not data; d: same digest at the same offset; e: past the base.
      chunks: [chunk("a", 10), chunk("x", 10), chunk("0", 10, true), chunk("d", 10), chunk("e", 5)],
    };
    expect(sameOffsetPositions(next, layoutOf(next), base)).toEqual([0, 3]);
    // Computed once per manifest, for the store, the partial image and the pull alike.
    expect(layoutOf(next)).toBe(layoutOf(next));
    // Shifted by an insertion: same digests, other offsets, nothing to copy.
    const shifted: Manifest = { ...next, chunks: [chunk("i", 5), chunk("a", 10), chunk("b", 10)], size: 25 };
    expect(sameOffsetPositions(shifted, layoutOf(shifted), base)).toEqual([]);
  });

  it("reads a base copy in spans through the small gaps changed chunks leave, not over a hole", () => {
    const KiB = 1024;
    // 0-2: data; 3: a changed 8 KiB chunk; 4-5: data; 6-9: a 4 x 96 KiB zero run; 10-139: 64 KiB
    // chunks, 8.1 MiB of them.
    const lengths = [8, 8, 8, 8, 16, 8, 96, 96, 96, 96, ...Array<number>(130).fill(64)].map((n) => n * KiB);
    const offsets = new Float64Array(lengths.length + 1);
    for (const [i, length] of lengths.entries()) offsets[i + 1] = (offsets[i] as number) + length;
    const positions = [0, 1, 2, 4, 5, ...[...lengths.keys()].slice(10)];
    const spans = copySpans(offsets, positions);

    expect(spans[0]).toEqual({
      start: 0,
      length: 56 * KiB, // the changed chunk between is read, not written
      extents: [
        { from: 0, length: 24 * KiB, offset: 0, positions: [0, 1, 2] },
        { from: 32 * KiB, length: 24 * KiB, offset: 32 * KiB, positions: [4, 5] },
      ],
    });
    // The zero run ends the first span; the 64 KiB chunks fill spans of at most 8 MiB.
    expect(spans.slice(1).map((s) => s.start)).toEqual([offsets[10], offsets[138]]);
    expect(spans.slice(1).map((s) => s.extents.length)).toEqual([1, 1]);
    for (const span of spans) expect(span.length).toBeLessThanOrEqual(8 << 20);
    // Every position once, in order, each extent where its chunks lie in the span.
    expect(spans.flatMap((s) => s.extents.flatMap((e) => e.positions))).toEqual(positions);
    for (const span of spans)
      for (const extent of span.extents) {
        expect(extent.offset).toBe(span.start + extent.from);
        expect(extent.length).toBe(
          (offsets[(extent.positions.at(-1) as number) + 1] as number) -
            (offsets[extent.positions[0] as number] as number),
        );
      }
  });

  it("hands a released writer's run buffer to the next writer instead of allocating another", async () => {
    const data = seededBytes(1 << 20, 66);
    const manifest = await image("v1.raw", data);
    const store = await ImageStore.open(join(dir.path, "store"));
    const partial = await PartialImage.open(join(dir.path, "v1.partial"), manifest, "img-a@1", store.chunks);
    const [first, second] = dataChunks(manifest, data);
    const one = new PartialImageWriter(partial);
    await one.receive(first?.digest as string, first?.data as Buffer);
    // A request's last run is short: its bytes leave in a copy, and the run buffer stays free.
    const runMemory = one.tail(first?.offset as number, 0).buffer;
    one.release();
    const two = new PartialImageWriter(partial);
    await two.receive(second?.digest as string, second?.data as Buffer);
    expect(two.tail(second?.offset as number, 0).buffer).toBe(runMemory);
    await two.flush();
    await partial.close();
    await store.close();
  });

  it("rejects a corrupt chunk, writing nothing of it", async () => {
    const data = seededBytes(1 << 20, 62);
    const manifest = await image("v1.raw", data);
    const store = await ImageStore.open(join(dir.path, "store"));
    await store.beginVersion("img-a", 1, manifest);
    const [first] = dataChunks(manifest, data);
    const corrupt = Buffer.from(first?.data as Buffer);
    corrupt[10] = (corrupt[10] as number) ^ 1;
    const writer = await store.receiver("img-a", 1);
    await expect(writer.receive(first?.digest as string, corrupt)).rejects.toMatchObject({
      code: "CHUNK_DIGEST_MISMATCH",
    });
    await expect(
      writer.receive(sha256Hex(Buffer.from("stranger")), Buffer.from("stranger")),
    ).rejects.toMatchObject({
      code: "CHUNK_NOT_REFERENCED",
    });
    await writer.flush();
    expect(store.chunks.has(first?.digest as string)).toBe(false);
    await expect(store.completeVersion("img-a", 1)).rejects.toMatchObject({ code: "VERSION_INCOMPLETE" });
    await store.close();
  });

  /** Feeds `stream` to a sequence as a socket would: into its regions, `pieceBytes` at most per read. */
  function feed(sequence: ChunkSequence, stream: Buffer, pieceBytes: number): void {
    let at = 0;
    while (at < stream.length) {
      const region = sequence.region();
      const take = Math.min(region.length, pieceBytes, stream.length - at);
      stream.copy(region, 0, at, at + take);
      at += take;
      sequence.advance(take);
    }
  }

  it("receives a pull's body in place, verifies each chunk there, and copies repeated chunks", async () => {
    const a = seededBytes(1 << 20, 71);
    const data = Buffer.concat([a, seededBytes(1 << 20, 72), a, seededBytes(1 << 20, 73)]);
    const manifest = await image("v1.raw", data);
    const store = await ImageStore.open(join(dir.path, "store"));
    await store.beginVersion("img-a", 1, manifest);
    const missing = store.missingChunks("img-a", 1);
    const layout = layoutOf(manifest);
    expect([...layout.positions.values()].some((positions) => positions.length > 1)).toBe(true);
    const byDigest = new Map(dataChunks(manifest, data).map((chunk) => [chunk.digest, chunk.data]));
    const writer = await store.receiver("img-a", 1);
    let received = 0;
    const sequence = writer.sequence(missing, (_digest, length) => {
      received += length;
    });
    const body = Buffer.concat(missing.map((digest) => byDigest.get(digest) as Buffer));
    expect(sequence.totalBytes).toBe(body.length);
    // Adjacent chunks make one region: the reads are not cut at chunk boundaries.
    expect(sequence.region().length).toBeGreaterThan(MAX_CHUNK_LENGTH);
    feed(sequence, body, 100_000);
    expect(sequence.done).toBe(true);
    expect(sequence.region().length).toBe(0);
    expect(received).toBe(body.length);
    await writer.flush();
    expect(store.missingChunks("img-a", 1)).toEqual([]);
    const record = await store.completeVersion("img-a", 1);
    expect(record.digest).toBe(sha256Hex(data));
    expect((await readFile(store.imagePath(record.localId as string))).equals(data)).toBe(true);
    await store.close();
  });

  it("rejects a corrupt chunk of a pull's body, keeping the verified ones before it", async () => {
    const data = seededBytes(2 << 20, 74);
    const manifest = await image("v1.raw", data);
    const store = await ImageStore.open(join(dir.path, "store"));
    await store.beginVersion("img-a", 1, manifest);
    const chunks = dataChunks(manifest, data);
    const body = Buffer.concat(chunks.map((chunk) => chunk.data));
    const corruptAt = (chunks[0]?.data.length as number) + (chunks[1]?.data.length as number) + 5;
    body[corruptAt] = (body[corruptAt] as number) ^ 0xff;
    const writer = await store.receiver("img-a", 1);
    const sequence = writer.sequence(
      chunks.map((chunk) => chunk.digest),
      () => {},
    );
    expect(() => feed(sequence, body, 7_777)).toThrow(
      expect.objectContaining({ code: "CHUNK_DIGEST_MISMATCH" }),
    );
    await writer.flush();
    const missing = store.missingChunks("img-a", 1);
    expect(missing).not.toContain(chunks[0]?.digest);
    expect(missing).not.toContain(chunks[1]?.digest);
    expect(missing).toContain(chunks[2]?.digest);
    await store.close();
    const reopened = await ImageStore.open(join(dir.path, "store"));
    expect(reopened.missingChunks("img-a", 1)).toEqual(missing);
    await reopened.close();
  });

  it("checks a pull's chunks off the receiving thread: a corrupt one is never written, and is reported", async () => {
    // Runs of 8 MiB: the corrupt chunk's run is checked while the next ones arrive.
    const data = seededBytes(20 << 20, 75);
    const manifest = await image("v1.raw", data);
    const store = await ImageStore.open(join(dir.path, "store"));
    await store.beginVersion("img-a", 1, manifest);
    const chunks = dataChunks(manifest, data);
    const body = Buffer.concat(chunks.map((chunk) => chunk.data));
    const bad = chunks[1000] as (typeof chunks)[number];
    const corruptAt = bad.offset + 5;
    body[corruptAt] = (body[corruptAt] as number) ^ 0xff;
    const writer = await store.receiver("img-a", 1);
    const passed = new Set<string>();
    const sequence = writer.sequence(
      chunks.map((chunk) => chunk.digest),
      (digest) => passed.add(digest),
      { checkLater: true },
    );
    // Nothing is thrown as the bytes arrive: the check comes later.
    feed(sequence, body, 65_536);
    expect(sequence.done).toBe(true);
    writer.release();
    await expect(writer.checked()).rejects.toMatchObject({ code: "CHUNK_DIGEST_MISMATCH" });
    await expect(writer.backpressure()).rejects.toMatchObject({ code: "CHUNK_DIGEST_MISMATCH" });
    expect(passed.size).toBe(chunks.length - 1);
    expect(passed.has(bad.digest)).toBe(false);
    await writer.flush();
    // Everything else of the corrupt chunk's run was written, and is kept.
    expect(store.missingChunks("img-a", 1)).toEqual([bad.digest]);
    await receive(store, "img-a", 1, [bad]);
    const record = await store.completeVersion("img-a", 1);
    expect((await readFile(store.imagePath(record.localId as string))).equals(data)).toBe(true);
    await store.close();
  });

  it("after a crash keeps exactly the chunks whose bytes match, and refetches a torn one", async () => {
    const data = seededBytes(4 << 20, 63);
    const manifest = await image("v1.raw", data);
    const chunks = dataChunks(manifest, data);
    const half = chunks.slice(0, chunks.length >> 1);
    const crashed = await ImageStore.open(join(dir.path, "store"));
    await crashed.beginVersion("img-a", 1, manifest);
    await receive(crashed, "img-a", 1, half);
    // No close: the process "dies" here. A torn write leaves one chunk's bytes half new.
    const torn = half[3] as { digest: string; offset: number; data: Buffer };
    const partial = await open(join(dir.path, "store", "versions", "img-a", "1.partial"), "r+");
    await partial.write(Buffer.alloc(100, 0xee), 0, 100, torn.offset + 50);
    await partial.close();

    const store = await ImageStore.open(join(dir.path, "store"));
    const missing = new Set(store.missingChunks("img-a", 1));
    expect(missing.has(torn.digest)).toBe(true);
    for (const chunk of half) if (chunk !== torn) expect(missing.has(chunk.digest)).toBe(false);
    expect(missing.size).toBe(chunks.length - half.length + 1);
    expect(await allChunksMatch(store)).toBe(half.length - 1);
    await receive(
      store,
      "img-a",
      1,
      chunks.filter((c) => missing.has(c.digest)),
    );
    const record = await store.completeVersion("img-a", 1);
    expect((await readFile(store.imagePath(record.localId as string))).equals(data)).toBe(true);
    await store.close();
    await crashed.close();
  });

  it("never makes available a version whose image does not match the declared digest", async () => {
    const data = seededBytes(1 << 20, 64);
    const manifest = await image("v1.raw", data);
    const lying = { ...manifest, digest: sha256Hex(Buffer.from("another image")) };
    const store = await ImageStore.open(join(dir.path, "store"));
    await store.beginVersion("img-a", 1, lying);
    await receive(store, "img-a", 1, dataChunks(manifest, data));
    await expect(store.completeVersion("img-a", 1)).rejects.toMatchObject({ code: "IMAGE_DIGEST_MISMATCH" });
    expect(store.getVersion("img-a", 1)?.state).toBe("pending");
    expect(await readdir(join(dir.path, "store", "images"))).toEqual([]);
    await store.close();
  });

  it("keeps chunks another version needs when a pulled image is deleted, and collects the rest", async () => {
    const v1 = seededBytes(2 << 20, 65);
    const v2 = Buffer.from(v1);
    seededBytes(64 << 10, 66).copy(v2, 1 << 20);
    const { store, m1, m2 } = await holdingFirstOf(v1, v2);
    await store.beginVersion("img-a", 2, m2);
    const added = new Set(store.missingChunks("img-a", 2));
    expect(added.size).toBeGreaterThan(0);
    expect(added.size).toBeLessThan(20); // 64 KiB changed, 8 KiB chunks on average
    await receive(
      store,
      "img-a",
      2,
      dataChunks(m2, v2).filter((c) => added.has(c.digest)),
    );

    // Version 1's image holds the chunks version 2 shares: deleting it must not lose them.
    await store.deleteVersion("img-a", 1);
    const collected = await store.collectGarbage();
    expect(collected.chunksRemoved).toBe(0);
    expect(store.missingChunks("img-a", 2)).toEqual([]);
    const only1 = m1.chunks.filter((c) => !m2.chunks.some((d) => d.digest === c.digest));
    for (const chunk of only1) expect(store.chunks.has(chunk.digest)).toBe(false);
    const record = await store.completeVersion("img-a", 2);
    expect((await readFile(store.imagePath(record.localId as string))).equals(v2)).toBe(true);
    await store.close();

    const reopened = await ImageStore.open(join(dir.path, "store"));
    expect(await allChunksMatch(reopened)).toBe(new Set(m2.chunks.map((c) => c.digest)).size);
    await reopened.close();
  });
});
