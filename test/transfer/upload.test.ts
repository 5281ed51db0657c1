import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type UploadProgress, uploadImage } from "../../client/upload.ts";
import { chunkFile } from "../../common/image-format/chunk-file.ts";
import { RECORD_HEADER_BYTES, writeRecordHeader } from "../../common/image-format/chunk-records.ts";
import { sha256Hex } from "../../common/image-format/digest.ts";
import {
  decodeDigestList,
  decodeManifest,
  encodeDigestList,
  encodeManifest,
  type Manifest,
} from "../../common/image-format/manifest.ts";
import { signTransferToken } from "../../common/tokens/transfer-token.ts";
import {
  createTestKeys,
  type ManagerProcess,
  seededBytes,
  startManager,
  stopAllManagers,
  type TestKeys,
  temporaryDir,
} from "../support/transfer.ts";

function records(list: Array<[string, Buffer]>): Buffer {
  const out = Buffer.alloc(list.reduce((sum, [, data]) => sum + RECORD_HEADER_BYTES + data.length, 0));
  let at = 0;
  for (const [digest, data] of list) {
    at = writeRecordHeader(out, at, digest, data.length);
    data.copy(out, at);
    at += data.length;
  }
  return out;
}

function chunkAt(manifest: Manifest, data: Buffer, index: number): Buffer {
  let at = 0;
  for (let i = 0; i < index; i++) at += (manifest.chunks[i] as { length: number }).length;
  return data.subarray(at, at + (manifest.chunks[index] as { length: number }).length);
}

describe("upload to the origin manager", () => {
  let dir: Awaited<ReturnType<typeof temporaryDir>>;
  let keys: TestKeys;
  let manager: ManagerProcess;
  let imagePath: string;
  let image: Buffer;

  beforeAll(async () => {
    dir = await temporaryDir("upload");
    keys = await createTestKeys(dir.path);
    manager = await startManager({
      dataDir: join(dir.path, "a"),
      datacenter: "dc-a",
      publicKeyFile: keys.publicKeyFile,
    });
    image = seededBytes(4 << 20, 41);
    image.fill(0, 1 << 20, 2 << 20);
    imagePath = join(dir.path, "image.raw");
    await writeFile(imagePath, image);
  });
  afterAll(async () => {
    await stopAllManagers();
    await dir.remove();
  });

  const upload = async (
    imageId: string,
    version: number,
    path = imagePath,
    onProgress?: (p: UploadProgress) => void,
  ) =>
    uploadImage({
      path,
      managerUrl: manager.url,
      token: await keys.token(imageId, version, "dc-a", "upload"),
      imageId,
      version,
      batchBytes: 512 << 10,
      ...(onProgress ? { onProgress } : {}),
    });

  it("uploads only the missing chunks, commits, and a re-upload sends no chunk bytes", async () => {
    const progress: UploadProgress[] = [];
    const first = await upload("img-up", 1, imagePath, (p) => progress.push({ ...p }));
    expect(first.record).toMatchObject({ state: "available", digest: sha256Hex(image), size: image.length });
    expect(first.record.localId).toMatch(/^img-/);
    // The 1 MiB hole is cut out exactly and never sent.
    expect(first.bytesSent).toBe(3 << 20);
    const sending = progress.filter((p) => p.phase === "sending");
    expect(sending.at(-1)).toMatchObject({ bytesDone: first.bytesSent, bytesTotal: first.bytesSent });
    expect(sending.at(-1)?.bytesPerSecond).toBeGreaterThan(0);
    expect(sending.at(-1)?.chunksSkipped).toBe(first.chunksSkipped);
    expect(first.chunksSkipped).toBe(4); // the hole, in 256 KiB zero chunks
    expect(first.method).toBe("chunks"); // too small to be worth a probe

    const again = await upload("img-up", 1);
    expect(again.bytesSent).toBe(0);
    expect(again.chunksSent).toBe(0);
    expect(again.record.localId).toBe(first.record.localId);
  });

  it("takes the whole image in one request, verified against x-image-digest", async () => {
    const url = (imageId: string) => `${manager.url}/v1/uploads/${imageId}/versions/1/image?format=raw`;
    const put = async (imageId: string, body: Buffer, digest?: string) =>
      fetch(url(imageId), {
        method: "PUT",
        headers: {
          authorization: `Bearer ${await keys.token(imageId, 1, "dc-a", "upload")}`,
          ...(digest ? { "x-image-digest": digest } : {}),
        },
        body,
      });

    const whole = await put("img-whole", image, `sha256:${sha256Hex(image)}`);
    expect(whole.status).toBe(200);
    const record = (await whole.json()) as { chunkCount: number };
    expect(record).toMatchObject({ state: "available", digest: sha256Hex(image), size: image.length });
    // Cut and hashed as the body arrived: the manifest uploadImage would have sent.
    expect(record.chunkCount).toBe((await chunkFile(imagePath)).chunks.length);
    const stored = await fetch(`${manager.url}/v1/transfer/img-whole/versions/1/manifest`, {
      headers: { authorization: `Bearer ${await keys.token("img-whole", 1, "dc-a", "read")}` },
    });
    expect(decodeManifest(Buffer.from(await stored.arrayBuffer()))).toEqual(await chunkFile(imagePath));

    // Over several of the receiver's windows (8 MiB), one of them ending inside a run of zeros
    // (a hole the file does not reach until later data), the image ending in one (sized last).
    const long = seededBytes(21 << 20, 45);
    long.fill(0, 7 << 20, 10 << 20);
    long.fill(0, 19 << 20);
    const longPath = join(dir.path, "long.raw");
    await writeFile(longPath, long);
    const longAnswer = await put("img-whole-long", long);
    expect(longAnswer.status).toBe(200);
    expect(await longAnswer.json()).toMatchObject({
      state: "available",
      digest: sha256Hex(long),
      size: long.length,
    });
    const longManifest = await fetch(`${manager.url}/v1/transfer/img-whole-long/versions/1/manifest`, {
      headers: { authorization: `Bearer ${await keys.token("img-whole-long", 1, "dc-a", "read")}` },
    });
    expect(decodeManifest(Buffer.from(await longManifest.arrayBuffer()))).toEqual(await chunkFile(longPath));

    // A digest that does not match keeps nothing: the version is not available afterwards.
    const wrong = await put("img-wrong", image, `sha256:${"0".repeat(64)}`);
    expect(wrong.status).toBe(422);
    expect(((await wrong.json()) as { code: string }).code).toBe("image_digest_mismatch");
    const malformed = await put("img-wrong", image, "md5:abc");
    expect(malformed.status).toBe(400);
    expect(await malformed.json()).toMatchObject({
      code: "validation_failed",
      errors: [expect.objectContaining({ path: "header.x-image-digest" })],
    });
    const manifest = await fetch(`${manager.url}/v1/transfer/img-wrong/versions/1/manifest`, {
      headers: { authorization: `Bearer ${await keys.token("img-wrong", 1, "dc-a", "read")}` },
    });
    expect(manifest.status).toBe(404);

    // An upload token for another image is refused before a byte is read.
    const otherToken = await fetch(url("img-whole-2"), {
      method: "PUT",
      headers: { authorization: `Bearer ${await keys.token("img-whole", 1, "dc-a", "upload")}` },
      body: image,
    });
    expect(otherToken.status).toBe(403);
  });

  it("sends a new version as the chunks it adds only", async () => {
    const changed = Buffer.from(image);
    seededBytes(8192, 42).copy(changed, 3 << 20);
    const path = join(dir.path, "image-v2.raw");
    await writeFile(path, changed);
    const second = await upload("img-up", 2, path);
    expect(second.record.state).toBe("available");
    expect(second.chunksSent).toBeGreaterThan(0);
    expect(second.bytesSent).toBeLessThan(200 << 10);
  });

  it("resumes an interrupted upload without resending stored chunks", async () => {
    const data = seededBytes(3 << 20, 43);
    const path = join(dir.path, "resume.raw");
    await writeFile(path, data);
    const manifest = await chunkFile(path);
    const token = await keys.token("img-resume", 1, "dc-a", "upload");
    const base = `${manager.url}/v1/uploads/img-resume/versions/1`;
    const headers = { authorization: `Bearer ${token}` };
    await fetch(`${base}/manifest`, { method: "PUT", headers, body: encodeManifest(manifest) });
    // Half the chunks arrive, then the client dies.
    const half = Math.floor(manifest.chunks.length / 2);
    const sent = Array.from(
      { length: half },
      (_, i) => [manifest.chunks[i]?.digest, chunkAt(manifest, data, i)] as [string, Buffer],
    );
    expect((await fetch(`${base}/chunks`, { method: "POST", headers, body: records(sent) })).status).toBe(
      200,
    );
    const resumed = await uploadImage({
      path,
      managerUrl: manager.url,
      token,
      imageId: "img-resume",
      version: 1,
    });
    expect(resumed.chunksSent).toBe(manifest.chunks.length - half);
    expect(resumed.record.state).toBe("available");
  });

  it("sends a first upload whole when the manager holds little of it, and its update as chunks", async () => {
    // Over WHOLE_UPLOAD_MIN_BYTES, with a run of zeros the manager cuts out as the client would.
    const data = seededBytes(40 << 20, 46);
    data.fill(0, 8 << 20, 9 << 20);
    const path = join(dir.path, "auto.raw");
    await writeFile(path, data);
    const progress: UploadProgress[] = [];
    const first = await upload("img-auto", 1, path, (p) => progress.push({ ...p }));
    expect(first.method).toBe("whole");
    expect(first.record).toMatchObject({ state: "available", digest: sha256Hex(data), size: data.length });
    expect(first.bytesSent).toBe(data.length);
    expect(progress.at(-1)).toMatchObject({
      phase: "committing",
      bytesDone: data.length,
      bytesTotal: data.length,
    });
    const stored = await fetch(`${manager.url}/v1/transfer/img-auto/versions/1/manifest`, {
      headers: { authorization: `Bearer ${await keys.token("img-auto", 1, "dc-a", "read")}` },
    });
    const manifest = await chunkFile(path);
    expect(decodeManifest(Buffer.from(await stored.arrayBuffer()))).toEqual(manifest);
    expect(first.chunksSent).toBe(manifest.chunks.length);

    // The update: the probe finds the chunks of version 1, so only what changed is sent.
    const changed = Buffer.from(data);
    seededBytes(64 << 10, 47).copy(changed, 20 << 20);
    const changedPath = join(dir.path, "auto-2.raw");
    await writeFile(changedPath, changed);
    const second = await upload("img-auto", 2, changedPath);
    expect(second.method).toBe("chunks");
    expect(second.record).toMatchObject({ state: "available", digest: sha256Hex(changed) });
    expect(second.bytesSent).toBeLessThan(256 << 10);

    // Asked to, a small file goes whole too.
    const small = await uploadImage({
      path: imagePath,
      managerUrl: manager.url,
      token: await keys.token("img-auto-small", 1, "dc-a", "upload"),
      imageId: "img-auto-small",
      version: 1,
      method: "whole",
    });
    expect(small).toMatchObject({
      method: "whole",
      record: { state: "available", digest: sha256Hex(image) },
    });
  });

  it("answers a probe with the digests the project does not hold here, and only within its token", async () => {
    const manifest = await chunkFile(imagePath);
    await upload("img-probed", 1);
    const held = manifest.chunks.filter((chunk) => !chunk.zero).map((chunk) => chunk.digest);
    const unknown = sha256Hex(Buffer.from("not stored anywhere"));
    const probe = async (imageId: string, body: Buffer, token?: string) =>
      fetch(`${manager.url}/v1/uploads/${imageId}/versions/1/probe`, {
        method: "POST",
        headers: { authorization: `Bearer ${token ?? (await keys.token(imageId, 1, "dc-a", "upload"))}` },
        body,
      });
    // A new image of the same project: the chunks of img-probed count as held.
    const answer = await probe("img-probe-new", encodeDigestList([...held.slice(0, 3), unknown]));
    expect(answer.status).toBe(200);
    expect(answer.headers.get("x-missing-chunks")).toBe("1");
    expect(decodeDigestList(Buffer.from(await answer.arrayBuffer()))).toEqual([unknown]);

    // Another project holds none of them.
    const otherProject = await signTransferToken(keys.privateKey, {
      imageId: "img-probe-new",
      version: 1,
      datacenter: "dc-a",
      action: "upload",
      projectId: "prj_other",
    });
    const other = await probe("img-probe-new", encodeDigestList(held.slice(0, 3)), otherProject);
    expect(decodeDigestList(Buffer.from(await other.arrayBuffer()))).toHaveLength(3);

    // A token of another image, or a body that is not a list of digests, or too long a one.
    expect(
      (await probe("img-probe-new", Buffer.alloc(32), await keys.token("img-probed", 1, "dc-a", "upload")))
        .status,
    ).toBe(403);
    const ragged = await probe("img-probe-new", Buffer.alloc(33));
    expect(ragged.status).toBe(400);
    const tooMany = await probe("img-probe-new", Buffer.alloc(4097 * 32));
    expect(tooMany.status).toBe(400);
    expect(await tooMany.json()).toMatchObject({ errors: [expect.objectContaining({ path: "body" })] });
  });

  it("fails, naming the offset, when the file is shorter than when it was chunked", async () => {
    const data = seededBytes(2 << 20, 44);
    const path = join(dir.path, "shrinks.raw");
    await writeFile(path, data);
    const manifest = await chunkFile(path);
    await writeFile(path, data.subarray(0, 1 << 20));
    await expect(
      uploadImage({
        path,
        managerUrl: manager.url,
        token: await keys.token("img-shrinks", 1, "dc-a", "upload"),
        imageId: "img-shrinks",
        version: 1,
        manifest,
      }),
    ).rejects.toThrow(`${1 << 20}: the file is shorter than when it was chunked`);
  });

  it("refuses requests without a token or with a token of another scope", async () => {
    const manifest = await chunkFile(imagePath);
    const body = encodeManifest(manifest);
    const url = `${manager.url}/v1/uploads/img-up/versions/3/manifest`;
    const cases: Array<[string | undefined, number, string]> = [
      [undefined, 401, "unauthenticated"],
      [await keys.token("img-up", 3, "dc-b", "upload"), 403, "forbidden"],
      [await keys.token("img-other", 3, "dc-a", "upload"), 403, "forbidden"],
      [await keys.token("img-up", 3, "dc-a", "read"), 403, "forbidden"],
      ["not.a.token", 401, "unauthenticated"],
    ];
    for (const [token, status, code] of cases) {
      const response = await fetch(url, {
        method: "PUT",
        headers: token ? { authorization: `Bearer ${token}` } : {},
        body,
      });
      expect(response.status).toBe(status);
      expect(response.headers.get("content-type")).toContain("application/problem+json");
      expect(await response.json()).toMatchObject({ code });
    }
  });

  it("rejects bad manifests, naming the field", async () => {
    const manifest = await chunkFile(imagePath);
    const put = async (imageId: string, body: Buffer) =>
      fetch(`${manager.url}/v1/uploads/${imageId}/versions/1/manifest`, {
        method: "PUT",
        headers: {
          authorization: `Bearer ${await keys.token(decodeURIComponent(imageId), 1, "dc-a", "upload")}`,
        },
        body,
      });

    const wrongSize = await put("img-bad", encodeManifest({ ...manifest, size: manifest.size + 1 }));
    expect(wrongSize.status).toBe(400);
    expect(await wrongSize.json()).toMatchObject({
      code: "invalid_manifest",
      errors: [expect.objectContaining({ path: "chunks" })],
    });

    const huge = structuredClone(manifest);
    (huge.chunks[0] as { length: number }).length += 1 << 20;
    huge.size += 1 << 20;
    const tooLarge = await put("img-bad", encodeManifest(huge));
    expect(tooLarge.status).toBe(400);
    expect(await tooLarge.json()).toMatchObject({
      code: "invalid_manifest",
      errors: [expect.objectContaining({ path: "chunks[0].length" })],
    });

    const traversal = await put(encodeURIComponent("../../etc"), encodeManifest(manifest));
    expect(traversal.status).toBe(400);
    expect(await traversal.json()).toMatchObject({
      code: "validation_failed",
      errors: [expect.objectContaining({ path: "imageId" })],
    });

    const garbage = await put("img-bad", Buffer.from('{"chunks": []}'));
    expect(garbage.status).toBe(400);
  });

  it("rejects a corrupt chunk and a chunk the manifest does not list, storing neither", async () => {
    const data = seededBytes(1 << 20, 44);
    const path = join(dir.path, "corrupt.raw");
    await writeFile(path, data);
    const manifest = await chunkFile(path);
    const token = await keys.token("img-corrupt", 1, "dc-a", "upload");
    const base = `${manager.url}/v1/uploads/img-corrupt/versions/1`;
    const headers = { authorization: `Bearer ${token}` };
    await fetch(`${base}/manifest`, { method: "PUT", headers, body: encodeManifest(manifest) });

    const good = chunkAt(manifest, data, 0);
    const corrupt = Buffer.from(good);
    corrupt[10] = (corrupt[10] as number) ^ 1;
    const rejected = await fetch(`${base}/chunks`, {
      method: "POST",
      headers,
      body: records([[manifest.chunks[0]?.digest as string, corrupt]]),
    });
    expect(rejected.status).toBe(422);
    expect(await rejected.json()).toMatchObject({ code: "chunk_digest_mismatch" });

    const stranger = seededBytes(5000, 45);
    const notListed = await fetch(`${base}/chunks`, {
      method: "POST",
      headers,
      body: records([[sha256Hex(stranger), stranger]]),
    });
    expect(notListed.status).toBe(422);
    expect(await notListed.json()).toMatchObject({ code: "chunk_not_referenced" });

    const answer = await fetch(`${base}/manifest`, {
      method: "PUT",
      headers,
      body: encodeManifest(manifest),
    });
    expect(Number(answer.headers.get("x-missing-chunks"))).toBe(manifest.chunks.length);
  });

  it("refuses to commit an image whose whole digest is not the declared one", async () => {
    const data = seededBytes(512 << 10, 46);
    const path = join(dir.path, "lying.raw");
    await writeFile(path, data);
    const manifest = await chunkFile(path);
    const lying = { ...manifest, digest: sha256Hex(Buffer.from("another image")) };
    await expect(
      uploadImage({
        path,
        manifest: lying,
        managerUrl: manager.url,
        token: await keys.token("img-lying", 1, "dc-a", "upload"),
        imageId: "img-lying",
        version: 1,
      }),
    ).rejects.toMatchObject({ status: 422, code: "image_digest_mismatch" });
  });

  it("answers an upload only about its own project's chunks, and commits only what was sent", async () => {
    // Project A holds an image; project B builds one that shares most of its chunks.
    const theirs = seededBytes(2 << 20, 47);
    const mine = Buffer.concat([theirs.subarray(0, 3 << 19), seededBytes(1 << 19, 48)]);
    const [theirsPath, minePath] = [join(dir.path, "a.raw"), join(dir.path, "b.raw")];
    await writeFile(theirsPath, theirs);
    await writeFile(minePath, mine);
    const tokenOf = (imageId: string, project: string) => keys.token(imageId, 1, "dc-a", "upload", project);
    await uploadImage({
      path: theirsPath,
      managerUrl: manager.url,
      token: await tokenOf("img-a-held", "prj_a"),
      imageId: "img-a-held",
      version: 1,
    });

    const manifest = await chunkFile(minePath);
    const held = new Set((await chunkFile(theirsPath)).chunks.map((c) => c.digest));
    const shared = manifest.chunks.filter((c) => !c.zero && held.has(c.digest)).map((c) => c.digest);
    expect(shared.length).toBeGreaterThan(0);
    const base = `${manager.url}/v1/uploads/img-b/versions/1`;
    const headers = { authorization: `Bearer ${await tokenOf("img-b", "prj_b")}` };
    const asked = await fetch(`${base}/manifest`, { method: "PUT", headers, body: encodeManifest(manifest) });
    // Every data chunk is asked for, the shared ones too: nothing tells B what A stores.
    const data = manifest.chunks.filter((c) => !c.zero);
    expect(Number(asked.headers.get("x-missing-chunks"))).toBe(new Set(data.map((c) => c.digest)).size);
    expect(decodeDigestList(Buffer.from(await asked.arrayBuffer()))).toEqual(expect.arrayContaining(shared));

    // B sends only what A does not hold, and commits: refused, the shared chunks were never sent.
    const own = manifest.chunks
      .map((c, i) => [c, i] as const)
      .filter(([c]) => !c.zero && !shared.includes(c.digest));
    const sent = await fetch(`${base}/chunks`, {
      method: "POST",
      headers,
      body: records(own.map(([c, i]) => [c.digest, chunkAt(manifest, mine, i)])),
    });
    expect(await sent.json()).toEqual({ received: own.length, stored: own.length });
    const commit = await fetch(`${base}/commit`, { method: "POST", headers });
    expect(commit.status).toBe(409);
    expect(await commit.json()).toMatchObject({ code: "version_incomplete" });
    // Sending them (proof it has them) completes the upload.
    const rest = await uploadImage({
      path: minePath,
      managerUrl: manager.url,
      token: headers.authorization.slice(7),
      imageId: "img-b",
      version: 1,
    });
    expect(rest.chunksSent).toBe(new Set(shared).size);
    expect(rest.record).toMatchObject({ state: "available", digest: sha256Hex(mine) });

    // Within a project, an image reuses the chunks of another: A's second image sends only its own.
    const again = await uploadImage({
      path: minePath,
      managerUrl: manager.url,
      token: await tokenOf("img-a-second", "prj_a"),
      imageId: "img-a-second",
      version: 1,
    });
    expect(again.chunksSent).toBe(new Set(own.map(([c]) => c.digest)).size);
  });

  it("refuses an upload token that names no project (signed before the claim existed)", async () => {
    const old = await signTransferToken(keys.privateKey, {
      imageId: "img-old",
      version: 1,
      datacenter: "dc-a",
      action: "upload",
    });
    const response = await fetch(`${manager.url}/v1/uploads/img-old/versions/1/manifest`, {
      method: "PUT",
      headers: { authorization: `Bearer ${old}` },
      body: encodeManifest(await chunkFile(imagePath)),
    });
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({ code: "unauthenticated" });
  });
});
