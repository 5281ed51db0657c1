import { execFileSync } from "node:child_process";
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { chunkFile } from "../../common/image-format/chunk-file.ts";
import { sha256Hex } from "../../common/image-format/digest.ts";
import { encodeManifest, type Manifest } from "../../common/image-format/manifest.ts";
import { manifestDigest } from "../../common/image-format/manifest-digest.ts";
import { ImageStore } from "../../regional-manager/store/image-store.ts";
import { seededBytes, temporaryDir } from "../support/transfer.ts";

/** Puts the non-zero chunks of `data` (cut as `manifest` says) into the store. */
async function putChunks(
  store: ImageStore,
  manifest: Manifest,
  data: Buffer,
  skip: (i: number) => boolean = () => false,
) {
  let at = 0;
  for (const [i, chunk] of manifest.chunks.entries()) {
    if (!chunk.zero && !skip(i)) await store.chunks.put(chunk.digest, data.subarray(at, at + chunk.length));
    at += chunk.length;
  }
  await store.chunks.flush();
}

describe("ImageStore", () => {
  let dir: Awaited<ReturnType<typeof temporaryDir>>;
  beforeEach(async () => {
    dir = await temporaryDir("image-store");
  });
  afterEach(async () => {
    await dir.remove();
  });

  async function imageFile(name: string, data: Buffer): Promise<Manifest> {
    const path = join(dir.path, name);
    await writeFile(path, data);
    return chunkFile(path);
  }

  it("makes a version available with a local id, its image assembled sparse and byte-exact", async () => {
    const data = seededBytes(6 << 20, 21);
    data.fill(0, 1 << 20, 5 << 20); // a filesystem-like hole of 4 MiB
    const manifest = await imageFile("v1.raw", data);
    const store = await ImageStore.open(join(dir.path, "store"));
    const pending = await store.beginVersion("img-a", 1, manifest, { format: "raw" });
    expect(pending.state).toBe("pending");
    expect(store.missingChunks("img-a", 1).length).toBe(manifest.chunks.filter((c) => !c.zero).length);
    await putChunks(store, manifest, data);
    expect(store.missingChunks("img-a", 1)).toEqual([]);
    // The hole costs nothing in the chunk store.
    expect(store.stats().chunkBytes).toBe(2 << 20);

    const record = await store.completeVersion("img-a", 1);
    expect(record).toMatchObject({
      state: "available",
      size: data.length,
      digest: sha256Hex(data),
      format: "raw",
    });
    expect(record.localId).toMatch(/^img-[0-9a-f]{16}$/);
    const path = store.imagePath(record.localId as string);
    expect((await readFile(path)).equals(data)).toBe(true);
    const info = await stat(path);
    expect(info.blocks * 512).toBeLessThan(data.length - (3 << 20));
    await store.close();

    const reopened = await ImageStore.open(join(dir.path, "store"));
    expect(reopened.getVersion("img-a", 1)).toEqual(record);
    expect(reopened.findByLocalId(record.localId as string)).toEqual(record);
    await reopened.close();
  });

  it("refuses to complete a version with missing chunks", async () => {
    const data = seededBytes(1 << 20, 22);
    const manifest = await imageFile("v1.raw", data);
    const store = await ImageStore.open(join(dir.path, "store"));
    await store.beginVersion("img-a", 1, manifest);
    await putChunks(store, manifest, data, (i) => i === 5);
    await expect(store.completeVersion("img-a", 1)).rejects.toMatchObject({ code: "VERSION_INCOMPLETE" });
    expect(store.getVersion("img-a", 1)?.state).toBe("pending");
    // The refused attempt left nothing in the way of the next, once the chunk is here.
    await putChunks(store, manifest, data, (i) => i !== 5);
    const record = await store.completeVersion("img-a", 1);
    expect((await readFile(store.imagePath(record.localId as string))).equals(data)).toBe(true);
    await store.close();
  });

  it("gives a version's manifest in its binary form, as it keeps it", async () => {
    const manifest = await imageFile("v1.raw", seededBytes(1 << 20, 23));
    const store = await ImageStore.open(join(dir.path, "store"));
    await store.beginVersion("img-a", 1, manifest);
    expect((await store.encodedManifest("img-a", 1)).equals(encodeManifest(manifest))).toBe(true);
    await expect(store.encodedManifest("img-a", 2)).rejects.toMatchObject({ code: "VERSION_NOT_FOUND" });
    await store.deleteVersion("img-a", 1);
    await expect(store.encodedManifest("img-a", 1)).rejects.toMatchObject({ code: "VERSION_NOT_FOUND" });
    await store.close();
  });

  it("forgets a version whose content is refused: no record, image or chunk is left of it", async () => {
    const data = seededBytes(1 << 20, 24);
    data.write("QFI\xfb\0\0\0\x03", 0, "latin1"); // raw bytes that announce a qcow2 (version 3)
    const manifest = await imageFile("v1.raw", data);
    const store = await ImageStore.open(join(dir.path, "store"));
    await store.beginVersion("img-a", 1, manifest, { format: "raw" });
    await putChunks(store, manifest, data);
    await expect(store.completeVersion("img-a", 1)).rejects.toMatchObject({
      code: "IMAGE_FORMAT_REFUSED",
      message: "image img-a version 1 is refused: declared raw, but the content is a qcow2 image",
    });
    expect(store.getVersion("img-a", 1)).toBeUndefined();
    expect(await readdir(join(dir.path, "store/versions/img-a"))).toEqual([]);
    expect(await readdir(join(dir.path, "store/images"))).toEqual([]);
    expect((await store.collectGarbage()).bytesReclaimed).toBe(data.length);
    await store.close();
    const reopened = await ImageStore.open(join(dir.path, "store"));
    expect(reopened.listVersions()).toEqual([]);
    await reopened.close();
  });

  it("refuses a version whose assembled image does not match the declared digest", async () => {
    const data = seededBytes(1 << 20, 23);
    const manifest = await imageFile("v1.raw", data);
    const lying = { ...manifest, digest: sha256Hex(Buffer.from("something else")) };
    const store = await ImageStore.open(join(dir.path, "store"));
    await store.beginVersion("img-a", 1, lying);
    await putChunks(store, manifest, data);
    await expect(store.completeVersion("img-a", 1)).rejects.toMatchObject({ code: "IMAGE_DIGEST_MISMATCH" });
    expect(store.getVersion("img-a", 1)?.state).toBe("pending");
    expect(await readdir(join(dir.path, "store", "images"))).toEqual([]);
    // Vouched for by the catalog's manifest digest (recorded at upload, where the whole image was
    // hashed), the same manifest completes: its chunks are verified, the file is not hashed again.
    await store.beginVersion("img-a", 2, lying, { manifestDigest: manifestDigest(lying) });
    expect((await store.completeVersion("img-a", 2)).state).toBe("available");
    await store.close();
  });

  it("checks a pulled manifest against the catalog's manifest digest, and then needs no whole-image pass", async () => {
    const data = seededBytes(1 << 20, 25);
    const manifest = await imageFile("v1.raw", data);
    const store = await ImageStore.open(join(dir.path, "store"));
    // A manifest other than the one the catalog recorded at upload is refused before any chunk.
    const reordered = { ...manifest, chunks: [...manifest.chunks].reverse() };
    await expect(
      store.beginVersion("img-a", 1, reordered, { manifestDigest: manifestDigest(manifest) }),
    ).rejects.toMatchObject({ code: "MANIFEST_DIGEST_MISMATCH", message: /not the catalog's sha256:/ });
    expect(store.getVersion("img-a", 1)).toBeUndefined();

    const begun = await store.beginVersion("img-a", 1, manifest, {
      manifestDigest: manifestDigest(manifest),
    });
    expect(begun).toMatchObject({ manifestDigest: manifestDigest(manifest), manifestVerified: true });
    await putChunks(store, manifest, data);
    const record = await store.completeVersion("img-a", 1);
    expect(record.state).toBe("available");
    expect((await readFile(store.imagePath(record.localId as string))).equals(data)).toBe(true);
    await store.close();
  });

  it("refuses invalid identifiers and a conflicting manifest for an available version", async () => {
    const data = seededBytes(256 << 10, 24);
    const manifest = await imageFile("v1.raw", data);
    const store = await ImageStore.open(join(dir.path, "store"));
    await expect(store.beginVersion("../escape", 1, manifest)).rejects.toMatchObject({
      code: "INVALID_IDENTIFIER",
    });
    await expect(store.beginVersion("img-a", 0, manifest)).rejects.toMatchObject({
      code: "INVALID_IDENTIFIER",
    });
    await store.beginVersion("img-a", 1, manifest);
    await putChunks(store, manifest, data);
    await store.completeVersion("img-a", 1);
    const other = await imageFile("other.raw", seededBytes(256 << 10, 25));
    await expect(store.beginVersion("img-a", 1, other)).rejects.toMatchObject({ code: "VERSION_CONFLICT" });
    expect(() => store.imagePath("img-0000000000000000")).toThrow();
    await store.close();
  });

  it("shares one assembly between concurrent completions of a version", async () => {
    const data = seededBytes(2 << 20, 26);
    const manifest = await imageFile("v1.raw", data);
    const store = await ImageStore.open(join(dir.path, "store"));
    await store.beginVersion("img-a", 1, manifest);
    await putChunks(store, manifest, data);
    const [first, second] = await Promise.all([
      store.completeVersion("img-a", 1),
      store.completeVersion("img-a", 1),
    ]);
    expect(first.localId).toBe(second.localId);
    expect(await readdir(join(dir.path, "store", "images"))).toEqual([`${first.localId}.img`]);
    await store.close();
  });

  it("collects chunks no version references and never one still referenced", async () => {
    const v1 = seededBytes(2 << 20, 27);
    const v2 = Buffer.from(v1);
    seededBytes(64 << 10, 28).copy(v2, 1 << 20); // an adaptation block in the middle
    const m1 = await imageFile("v1.raw", v1);
    const m2 = await imageFile("v2.raw", v2);
    const store = await ImageStore.open(join(dir.path, "store"));
    await store.beginVersion("img-a", 1, m1);
    await putChunks(store, m1, v1);
    await store.completeVersion("img-a", 1);
    await store.beginVersion("img-a", 2, m2);
    const newChunks = store.missingChunks("img-a", 2);
    expect(newChunks.length).toBeGreaterThan(0);
    expect(newChunks.length).toBeLessThan(10);
    await putChunks(store, m2, v2);
    const only1 = new Set(
      m1.chunks.map((c) => c.digest).filter((d) => !m2.chunks.some((c) => c.digest === d)),
    );

    // Version 2 is still pending: collecting now must keep all its chunks.
    const none = await store.collectGarbage();
    expect(none.chunksRemoved).toBe(0);

    await store.deleteVersion("img-a", 1);
    const collected = await store.collectGarbage();
    expect(collected.chunksRemoved).toBe(only1.size);
    for (const digest of only1) expect(store.chunks.has(digest)).toBe(false);
    const record = await store.completeVersion("img-a", 2);
    expect((await readFile(store.imagePath(record.localId as string))).equals(v2)).toBe(true);
    await store.close();
  });
  it("answers an upload about its project's available versions and what it sent, nothing else", async () => {
    const data = seededBytes(2 << 20, 61);
    const manifest = await imageFile("shared.raw", data);
    const distinct = new Set(manifest.chunks.filter((c) => !c.zero).map((c) => c.digest)).size;
    const store = await ImageStore.open(join(dir.path, "store"));
    // Project A's version, pulled by the manager itself (its own view is not scoped).
    await store.beginVersion("img-a", 1, manifest, { project: "prj_a" });
    await putChunks(store, manifest, data);
    await store.completeVersion("img-a", 1);

    await store.beginVersion("img-b", 1, manifest, { project: "prj_b" });
    expect(store.missingChunks("img-b", 1)).toEqual([]);
    expect(await store.missingChunksOfUpload("img-b", 1, "prj_b")).toHaveLength(distinct);
    await expect(store.completeVersion("img-b", 1, "prj_b")).rejects.toMatchObject({
      code: "VERSION_INCOMPLETE",
    });
    // What B sends counts for B.
    const first = manifest.chunks[0] as { digest: string; length: number };
    const writer = await store.receiver("img-b", 1);
    expect(await writer.receive(first.digest, data.subarray(0, first.length))).toBe(true);
    await writer.flush();
    const resent = await store.receiver("img-b", 1);
    expect(await resent.receive(first.digest, data.subarray(0, first.length))).toBe(false);
    await resent.flush();
    expect(await store.missingChunksOfUpload("img-b", 1, "prj_b")).toHaveLength(distinct - 1);
    await store.close();

    // Project A's next image reuses A's chunks, also after a restart (the record keeps the project).
    const reopened = await ImageStore.open(join(dir.path, "store"));
    await reopened.beginVersion("img-c", 1, manifest, { project: "prj_a" });
    expect(await reopened.missingChunksOfUpload("img-c", 1, "prj_a")).toEqual([]);
    expect((await reopened.completeVersion("img-c", 1, "prj_a")).state).toBe("available");
    expect(await reopened.missingChunksOfUpload("img-b", 1, "prj_b")).toHaveLength(distinct - 1);
    await reopened.close();
  });
});

describe("ImageStore after a crash between the steps of a commit", () => {
  let dir: Awaited<ReturnType<typeof temporaryDir>>;
  let data: Buffer;
  let manifest: Manifest;
  let storeDir: string;
  beforeEach(async () => {
    dir = await temporaryDir("commit-crash");
    data = seededBytes(2 << 20, 71);
    await writeFile(join(dir.path, "v1.raw"), data);
    manifest = await chunkFile(join(dir.path, "v1.raw"));
    storeDir = join(dir.path, "store");
  });
  afterEach(async () => {
    await dir.remove();
  });

  it("removes an orphan image and stale records, and the pending version commits again", async () => {
    const store = await ImageStore.open(storeDir);
    await store.beginVersion("img-a", 1, manifest);
    await putChunks(store, manifest, data);
    await store.close();
    // What a crash left: the image renamed into place before its record said available (the
    // order before this fix), a pending record over another version's manifest, temporaries.
    await writeFile(join(storeDir, "images", "img-0123456789abcdef.img"), data);
    const other = await chunkFile(join(dir.path, "v1.raw"));
    await mkdir(join(storeDir, "versions", "img-b"));
    await writeFile(
      join(storeDir, "versions", "img-b", "1.json"),
      JSON.stringify({ imageId: "img-b", version: 1, state: "pending", size: 1, digest: "0".repeat(64) }),
    );
    await writeFile(join(storeDir, "versions", "img-b", "1.manifest"), encodeManifest(other));
    await writeFile(join(storeDir, "versions", "img-a", "2.json.tmp"), "{");
    await writeFile(join(storeDir, "versions", "img-a", "3.manifest"), encodeManifest(other));

    const reopened = await ImageStore.open(storeDir);
    expect(await readdir(join(storeDir, "images"))).toEqual([]);
    expect(reopened.getVersion("img-b", 1)).toBeUndefined();
    expect((await readdir(join(storeDir, "versions", "img-a"))).sort()).toEqual(["1.json", "1.manifest"]);
    expect(reopened.getVersion("img-a", 1)?.state).toBe("pending");
    const record = await reopened.completeVersion("img-a", 1);
    expect(await readdir(join(storeDir, "images"))).toEqual([`${record.localId}.img`]);
    expect((await readFile(reopened.imagePath(record.localId as string))).equals(data)).toBe(true);
    await reopened.close();
  });

  it("renames into place an image whose available record was written before the crash", async () => {
    const store = await ImageStore.open(storeDir);
    await store.beginVersion("img-a", 1, manifest);
    await putChunks(store, manifest, data);
    const { localId } = await store.completeVersion("img-a", 1);
    await store.beginVersion("img-gone", 1, manifest);
    await putChunks(store, manifest, data);
    const gone = await store.completeVersion("img-gone", 1);
    await store.close();
    // The record says available; the crash came before the rename (img-a), or took the image
    // file with it (img-gone: nothing to serve, the version is forgotten and pulled again).
    await rename(
      join(storeDir, "images", `${localId}.img`),
      join(storeDir, "versions", "img-a", "1.partial"),
    );
    await rm(join(storeDir, "images", `${gone.localId}.img`));

    const reopened = await ImageStore.open(storeDir);
    expect(reopened.getVersion("img-a", 1)).toMatchObject({ state: "available", localId });
    expect((await readFile(reopened.imagePath(localId as string))).equals(data)).toBe(true);
    expect(await readdir(join(storeDir, "versions", "img-a"))).not.toContain("1.partial");
    expect(reopened.getVersion("img-gone", 1)).toBeUndefined();
    await reopened.beginVersion("img-gone", 1, manifest);
    expect((await reopened.completeVersion("img-gone", 1)).state).toBe("available");
    await reopened.close();
  });
});

describe("ImageStore on a full disk", () => {
  let dir: Awaited<ReturnType<typeof temporaryDir>>;
  let mountPoint: string;
  beforeEach(async () => {
    dir = await temporaryDir("disk-full");
    mountPoint = join(dir.path, "small");
    await mkdir(mountPoint);
    // A real 8 MiB filesystem: the test runs as root (see the report if it does not).
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", mountPoint]);
  });
  afterEach(async () => {
    execFileSync("umount", [mountPoint]);
    await dir.remove();
  });

  it("fails with DISK_FULL, keeps what was stored intact, and stays usable", async () => {
    const small = seededBytes(1 << 20, 31);
    const big = seededBytes(12 << 20, 32);
    const smallManifest = await (async () => {
      await writeFile(join(dir.path, "small.raw"), small);
      return chunkFile(join(dir.path, "small.raw"));
    })();
    await writeFile(join(dir.path, "big.raw"), big);
    const bigManifest = await chunkFile(join(dir.path, "big.raw"));

    const store = await ImageStore.open(join(mountPoint, "store"), { sealBytes: 1 << 20 });
    await store.beginVersion("small", 1, smallManifest);
    await putChunks(store, smallManifest, small);
    const held = await store.completeVersion("small", 1);

    await store.beginVersion("big", 1, bigManifest);
    const error = await putChunks(store, bigManifest, big).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: "DISK_FULL" });
    expect(String((error as Error).message)).toMatch(/disk full/);
    await store.close();

    const reopened = await ImageStore.open(join(mountPoint, "store"));
    expect(reopened.getVersion("big", 1)?.state).toBe("pending");
    // Every chunk the store lists reads back and matches its digest.
    const digests = [...reopened.chunks.digests()];
    let i = 0;
    for await (const data of reopened.chunks.readMany(digests)) expect(sha256Hex(data)).toBe(digests[i++]);
    expect((await readFile(reopened.imagePath(held.localId as string))).equals(small)).toBe(true);

    // Freeing space makes it usable again.
    await reopened.deleteVersion("big", 1);
    await reopened.collectGarbage();
    expect(reopened.chunks.chunkCount).toBe(new Set(smallManifest.chunks.map((c) => c.digest)).size);
    const again = await reopened.beginVersion("small", 2, smallManifest);
    expect(again.state).toBe("pending");
    expect((await reopened.completeVersion("small", 2)).state).toBe("available");
    await reopened.close();
  });
});
