import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { importJWK, type JWK } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chunkFile } from "../../common/image-format/chunk-file.ts";
import { applyChunkPatch } from "../../common/image-format/chunk-patch.ts";
import { encodeDigestList, type Manifest } from "../../common/image-format/manifest.ts";
import { createTransferTokenVerifier } from "../../common/tokens/transfer-token.ts";
import { ImageStore } from "../../regional-manager/store/image-store.ts";
import { createTransferApp } from "../../regional-manager/transfer/app.ts";
import { createTestKeys, seededBytes, type TestKeys, temporaryDir } from "../support/transfer.ts";

// The chunk-serving route outside a Node server (app.request): the same bytes, as a web stream.
describe("serving a pull's chunks to a client that is not a Node server", () => {
  let dir: Awaited<ReturnType<typeof temporaryDir>>;
  let store: ImageStore;
  let keys: TestKeys;
  let app: ReturnType<typeof createTransferApp>;
  let manifest: Manifest;
  let data: Buffer;
  let manifest2: Manifest;
  let data2: Buffer;

  /** Stores `bytes` as an available version of img-s. */
  async function storeVersion(version: number, bytes: Buffer): Promise<Manifest> {
    await writeFile(join(dir.path, `v${version}.raw`), bytes);
    const chunked = await chunkFile(join(dir.path, `v${version}.raw`));
    await store.beginVersion("img-s", version, chunked);
    const writer = await store.receiver("img-s", version);
    let at = 0;
    for (const chunk of chunked.chunks) {
      if (!store.chunks.has(chunk.digest))
        await writer.receive(chunk.digest, bytes.subarray(at, at + chunk.length));
      at += chunk.length;
    }
    await writer.flush();
    await store.completeVersion("img-s", version);
    return chunked;
  }

  beforeAll(async () => {
    dir = await temporaryDir("serve-chunks");
    keys = await createTestKeys(dir.path);
    data = seededBytes(3 << 20, 81);
    store = await ImageStore.open(join(dir.path, "store"));
    manifest = await storeVersion(1, data);
    // Version 2: one 4 KiB block changed, and 64 KiB more at the end.
    data2 = Buffer.concat([data, seededBytes(64 << 10, 83)]);
    seededBytes(4096, 82).copy(data2, 1 << 20);
    manifest2 = await storeVersion(2, data2);
    const jwk = JSON.parse(readFileSync(keys.publicKeyFile, "utf8")) as JWK;
    const publicKey = await importJWK(jwk, "EdDSA");
    if (publicKey instanceof Uint8Array) throw new Error("expected an asymmetric key");
    app = createTransferApp({
      store,
      verifier: createTransferTokenVerifier({ keys: { publicKey }, datacenter: "dc-a" }),
    });
  });

  afterAll(async () => {
    await store.close();
    await dir.remove();
  });

  const ask = async (digests: string[]) =>
    app.request("/v1/transfer/img-s/versions/1/chunks", {
      method: "POST",
      headers: { authorization: `Bearer ${await keys.token("img-s", 1, "dc-a", "read")}` },
      body: encodeDigestList(digests),
    });

  it("answers with the data of the chunks asked for, in the order asked", async () => {
    const offsets = new Map<string, number>();
    let at = 0;
    for (const chunk of manifest.chunks) {
      offsets.set(chunk.digest, at);
      at += chunk.length;
    }
    // Out of manifest order, as a retry after a partial pull may ask.
    const asked = manifest.chunks.filter((_, i) => i % 3 !== 1).reverse();
    const response = await ask(asked.map((chunk) => chunk.digest));
    expect(response.status).toBe(200);
    const body = Buffer.from(await response.arrayBuffer());
    const expected = Buffer.concat(
      asked.map((chunk) =>
        data.subarray(offsets.get(chunk.digest), (offsets.get(chunk.digest) as number) + chunk.length),
      ),
    );
    expect(Number(response.headers.get("content-length"))).toBe(expected.length);
    expect(body.equals(expected)).toBe(true);
  });

  it("refuses a chunk that is not part of the version, naming it", async () => {
    const response = await ask(["ab".repeat(32)]);
    expect(response.status).toBeGreaterThanOrEqual(400);
    expect(await response.json()).toMatchObject({
      code: "chunk_not_referenced",
      detail: expect.stringContaining("ab".repeat(32)),
    });
  });

  const askPatches = async (digests: string[], query = "?base=1", version = 2) =>
    app.request(`/v1/transfer/img-s/versions/${version}/patches${query}`, {
      method: "POST",
      headers: { authorization: `Bearer ${await keys.token("img-s", version, "dc-a", "read")}` },
      body: encodeDigestList(digests),
    });

  it("answers patches against the base that rebuild each chunk from the base's bytes at its offset", async () => {
    const v1 = new Set(manifest.chunks.map((chunk) => chunk.digest));
    const changed: Array<{ digest: string; offset: number; length: number }> = [];
    let at = 0;
    for (const chunk of manifest2.chunks) {
      if (!v1.has(chunk.digest)) changed.push({ digest: chunk.digest, offset: at, length: chunk.length });
      at += chunk.length;
    }
    const response = await askPatches(changed.map((chunk) => chunk.digest));
    expect(response.status).toBe(200);
    expect(response.headers.get("x-chunk-count")).toBe(String(changed.length));
    const body = Buffer.from(await response.arrayBuffer());
    // The changed block (4 KiB, eight 512-byte blocks), the 64 KiB past the base's end, headers.
    expect(body.length).toBeLessThan(4096 + (64 << 10) + 1024);
    let from = 0;
    for (const chunk of changed) {
      const rebuilt = Buffer.alloc(chunk.length);
      // The base's bytes at the chunk's offset, zeros past its end.
      if (chunk.offset < data.length) data.copy(rebuilt, 0, chunk.offset, chunk.offset + chunk.length);
      from = applyChunkPatch(body, from, rebuilt);
      expect(rebuilt.equals(data2.subarray(chunk.offset, chunk.offset + chunk.length))).toBe(true);
    }
    expect(from).toBe(body.length);
  });

  it("refuses patches against a base it does not hold, or against the version itself, naming it", async () => {
    const digest = (manifest2.chunks[0] as { digest: string }).digest;
    for (const query of ["?base=7", "?base=2"]) {
      const response = await askPatches([digest], query);
      expect(response.status).toBe(404);
      expect(await response.json()).toMatchObject({
        code: "version_not_found",
        detail: expect.stringContaining(`version ${query.slice(6)} is not available`),
      });
    }
    const missing = await askPatches([digest], "");
    expect(missing.status).toBe(400);
    expect(JSON.stringify(await missing.json())).toContain("base");
  });

  it("refuses patches of a chunk that is not part of the version, and a token for another version", async () => {
    const notHere = await askPatches(["ab".repeat(32)]);
    expect(await notHere.json()).toMatchObject({
      code: "chunk_not_referenced",
      detail: expect.stringContaining("ab".repeat(32)),
    });
    const digest = (manifest2.chunks.find((chunk) => !chunk.zero) as { digest: string }).digest;
    const twice = await askPatches([digest, digest]);
    expect(twice.status).toBe(400);
    expect(await twice.json()).toMatchObject({ detail: expect.stringContaining("asked for twice") });
    const otherVersion = await app.request("/v1/transfer/img-s/versions/2/patches?base=1", {
      method: "POST",
      headers: { authorization: `Bearer ${await keys.token("img-s", 1, "dc-a", "read")}` },
      body: encodeDigestList([(manifest2.chunks[0] as { digest: string }).digest]),
    });
    expect(otherVersion.status).toBe(403);
  });
});
