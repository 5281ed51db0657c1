import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { importJWK, type JWK } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chunkFile } from "../../common/image-format/chunk-file.ts";
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

  beforeAll(async () => {
    dir = await temporaryDir("serve-chunks");
    keys = await createTestKeys(dir.path);
    data = seededBytes(3 << 20, 81);
    await writeFile(join(dir.path, "v1.raw"), data);
    manifest = await chunkFile(join(dir.path, "v1.raw"));
    store = await ImageStore.open(join(dir.path, "store"));
    await store.beginVersion("img-s", 1, manifest);
    const writer = await store.receiver("img-s", 1);
    let at = 0;
    for (const chunk of manifest.chunks) {
      await writer.receive(chunk.digest, data.subarray(at, at + chunk.length));
      at += chunk.length;
    }
    await writer.flush();
    await store.completeVersion("img-s", 1);
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
});
