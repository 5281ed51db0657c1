// Issue #12, finding 3: a manager refuses manifests and uploads over its limits from their
// first bytes, before it allocates anything for them, and its memory stays flat.
import { connect } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONNECTION_BODY_UPGRADE } from "../../common/binary-http.ts";
import { zeroChunkDigest } from "../../common/image-format/digest.ts";
import { encodeDigestList, encodeManifest } from "../../common/image-format/manifest.ts";
import { signTransferToken } from "../../common/tokens/transfer-token.ts";
import { DEFAULT_MANIFEST_LIMITS, readManifestBody } from "../../regional-manager/store/manifest-limits.ts";
import {
  createTestKeys,
  type ManagerProcess,
  seededBytes,
  startManager,
  stopAllManagers,
  TEST_PROJECT,
  type TestKeys,
  temporaryDir,
} from "../support/transfer.ts";

const ZERO_RUN = 256 * 1024;
const GiB = 1024 ** 3;

/** A manifest of `count` zero runs of `length` bytes, built as bytes (no million objects here). */
function zeroRunManifest(count: number, length = ZERO_RUN): Buffer {
  const one = encodeManifest({
    size: length,
    digest: "0".repeat(64),
    chunks: [{ digest: zeroChunkDigest(length), length, zero: true }],
  });
  const header = one.subarray(0, 52);
  const entry = one.subarray(52);
  const out = Buffer.allocUnsafe(52 + count * entry.length);
  header.copy(out);
  out.writeBigUInt64BE(BigInt(count) * BigInt(length), 8);
  out.writeUInt32BE(count, 48);
  for (let i = 0; i < count; i++) entry.copy(out, 52 + i * entry.length);
  return out;
}

async function rss(manager: ManagerProcess): Promise<number> {
  const stats = (await (await fetch(`${manager.url}/_test/stats`)).json()) as { rss: number };
  return stats.rss;
}

describe("readManifestBody", () => {
  it("refuses from the header, without reading the entries", async () => {
    const manifest = zeroRunManifest(1000);
    manifest.writeBigUInt64BE(262_144_000_000n, 8);
    let piecesRead = 0;
    async function* body() {
      for (let at = 0; at < manifest.length; at += 64) {
        piecesRead++;
        yield manifest.subarray(at, at + 64);
      }
    }
    await expect(readManifestBody(body(), DEFAULT_MANIFEST_LIMITS)).rejects.toMatchObject({
      code: "IMAGE_TOO_LARGE",
      message: expect.stringMatching(/262144000000 bytes, over this manager's limit of 68719476736/),
    });
    expect(piecesRead).toBe(1);
  });

  it("refuses a Content-Length over the limit before reading anything", async () => {
    await expect(
      readManifestBody([], { ...DEFAULT_MANIFEST_LIMITS, maxManifestBytes: 1000 }, 1001),
    ).rejects.toMatchObject({ code: "MANIFEST_TOO_LARGE" });
  });

  it("refuses a body longer than its header announces", async () => {
    const manifest = Buffer.concat([zeroRunManifest(2), Buffer.alloc(36)]);
    await expect(readManifestBody([manifest], DEFAULT_MANIFEST_LIMITS)).rejects.toMatchObject({
      code: "INVALID_MANIFEST",
    });
  });
});

describe("a manager's upload limits", () => {
  let dir: Awaited<ReturnType<typeof temporaryDir>>;
  let keys: TestKeys;
  let manager: ManagerProcess;

  beforeAll(async () => {
    dir = await temporaryDir("limits");
    keys = await createTestKeys(dir.path);
    manager = await startManager({
      dataDir: join(dir.path, "a"),
      datacenter: "dc-a",
      publicKeyFile: keys.publicKeyFile,
      args: ["--max-image-bytes", String(GiB), "--max-manifest-chunks", "100000"],
    });
  });
  afterAll(async () => {
    await stopAllManagers();
    await dir.remove();
  });

  async function putManifest(body: Buffer, version: number, token?: string) {
    const response = await fetch(`${manager.url}/v1/uploads/img-limits/versions/${version}/manifest`, {
      method: "PUT",
      headers: {
        authorization: `Bearer ${token ?? (await keys.token("img-limits", version, "dc-a", "upload"))}`,
      },
      body,
    });
    const answer = response.ok
      ? { code: "", detail: "" }
      : ((await response.json()) as { code: string; detail: string });
    return { status: response.status, body: answer };
  }

  it("refuses 1,000,000 zero runs declaring 262 GB with a 413, its memory flat", async () => {
    const attack = zeroRunManifest(1_000_000);
    expect(attack.length).toBe(36_000_052);
    const before = await rss(manager);
    for (let version = 1; version <= 3; version++) {
      const answer = await putManifest(attack, version);
      expect(answer.status).toBe(413);
      expect(answer.body.code).toBe("image_too_large");
      expect(answer.body.detail).toMatch(/262144000000 bytes, over this manager's limit of 1073741824/);
    }
    // Unbounded, one such manifest grew the manager by ~480 MB for good.
    const growth = (await rss(manager)) - before;
    console.log(`manager RSS after 3 refused 36 MB manifests: ${(growth / 2 ** 20).toFixed(1)} MiB more`);
    expect(growth).toBeLessThan(48 << 20);
  });

  it("refuses a manifest of zero runs that would become a 2 GiB image with 0 bytes sent", async () => {
    const answer = await putManifest(zeroRunManifest((2 * GiB) / ZERO_RUN), 4);
    expect(answer.status).toBe(413);
    expect(answer.body.code).toBe("image_too_large");
    const version = await fetch(`${manager.url}/v1/uploads/img-limits/versions/4/commit`, {
      method: "POST",
      headers: { authorization: `Bearer ${await keys.token("img-limits", 4, "dc-a", "upload")}` },
    });
    expect(version.status).toBe(404);
  });

  it("refuses more chunks than its limit, small as they are", async () => {
    const answer = await putManifest(zeroRunManifest(100_001, 4096), 5);
    expect(answer.status).toBe(413);
    expect(answer.body).toMatchObject({ code: "too_many_chunks" });
    expect(answer.body.detail).toMatch(/100001 chunks, over this manager's limit of 100000/);
  });

  it("holds an upload to the size its ticket allows (the project's storage quota)", async () => {
    const token = await signTransferToken(keys.privateKey, {
      imageId: "img-limits",
      version: 6,
      datacenter: "dc-a",
      action: "upload",
      projectId: TEST_PROJECT,
      maxBytes: 1 << 20,
    });
    const answer = await putManifest(zeroRunManifest(8), 6, token);
    expect(answer.status).toBe(413);
    expect(answer.body.detail).toMatch(/over the 1048576 its upload ticket allows/);
    expect((await putManifest(zeroRunManifest(4), 6, token)).status).toBe(200);
  });

  it("refuses a whole image whose Content-Length or body passes the limit", async () => {
    const url = `${manager.url}/v1/uploads/img-limits/versions/7/image`;
    const token = await signTransferToken(keys.privateKey, {
      imageId: "img-limits",
      version: 7,
      datacenter: "dc-a",
      action: "upload",
      projectId: TEST_PROJECT,
      maxBytes: 1 << 20,
    });
    const declared = await fetch(url, {
      method: "PUT",
      headers: { authorization: `Bearer ${token}` },
      body: seededBytes(2 << 20, 7),
    });
    expect(declared.status).toBe(413);
    // Streamed without a length: cut as it passes the limit.
    const streamed = await fetch(url, {
      method: "PUT",
      headers: { authorization: `Bearer ${token}` },
      duplex: "half",
      body: new ReadableStream({
        start(controller) {
          for (let i = 0; i < 4; i++) controller.enqueue(seededBytes(512 << 10, i));
          controller.close();
        },
      }),
    } as RequestInit);
    expect(streamed.status).toBe(413);
    expect(((await streamed.json()) as { code: string }).code).toBe("image_too_large");
    // Asking for the connection: refused from its Content-Length, the answer read before the
    // body has been sent.
    const socket = connect(manager.port, "127.0.0.1");
    let received = "";
    socket.on("data", (data: Buffer) => {
      received += data.toString();
    });
    socket.on("error", () => {});
    socket.write(
      `PUT /v1/uploads/img-limits/versions/7/image HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: ${CONNECTION_BODY_UPGRADE}\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${2 << 20}\r\n\r\n`,
    );
    await expect.poll(() => received).toMatch(/"code":"image_too_large"/);
    expect(received).toMatch(/^HTTP\/1\.1 413 /);
    socket.destroy();
  });

  it("refuses a chunk request that names one digest twice (400)", async () => {
    const data = seededBytes(1 << 20, 9);
    const upload = await fetch(`${manager.url}/v1/uploads/img-dup/versions/1/image`, {
      method: "PUT",
      headers: { authorization: `Bearer ${await keys.token("img-dup", 1, "dc-a", "upload")}` },
      body: data,
    });
    expect(upload.status).toBe(200);
    const readToken = await keys.token("img-dup", 1, "dc-a", "read");
    const manifest = await fetch(`${manager.url}/v1/transfer/img-dup/versions/1/manifest`, {
      headers: { authorization: `Bearer ${readToken}` },
    });
    const digest = Buffer.from(await manifest.arrayBuffer()).toString("hex", 52, 84);
    const chunks = (digests: string[]) =>
      fetch(`${manager.url}/v1/transfer/img-dup/versions/1/chunks`, {
        method: "POST",
        headers: { authorization: `Bearer ${readToken}` },
        body: encodeDigestList(digests),
      });
    const twice = await chunks([digest, digest]);
    expect(twice.status).toBe(400);
    expect(((await twice.json()) as { detail: string }).detail).toMatch(/asked for twice/);
    expect((await chunks([digest])).status).toBe(200);
  });
});

describe("a manager's HTTP server and slow clients", () => {
  let dir: Awaited<ReturnType<typeof temporaryDir>>;
  let keys: TestKeys;
  let manager: ManagerProcess;
  const idleMs = 800;

  beforeAll(async () => {
    dir = await temporaryDir("slow");
    keys = await createTestKeys(dir.path);
    manager = await startManager({
      dataDir: join(dir.path, "a"),
      datacenter: "dc-a",
      publicKeyFile: keys.publicKeyFile,
      env: { GLOBALVM_HTTP_BODY_IDLE_TIMEOUT_MS: String(idleMs), GLOBALVM_HTTP_HEADERS_TIMEOUT_MS: "500" },
    });
  });
  afterAll(async () => {
    await stopAllManagers();
    await dir.remove();
  });

  it("takes a whole-image PUT on a slow but steady link, lasting far past the idle timeout", async () => {
    const image = seededBytes(1 << 20, 11);
    const pieces = 12;
    const step = image.length / pieces;
    const started = Date.now();
    const response = await fetch(`${manager.url}/v1/uploads/img-slow/versions/1/image`, {
      method: "PUT",
      headers: { authorization: `Bearer ${await keys.token("img-slow", 1, "dc-a", "upload")}` },
      duplex: "half",
      body: new ReadableStream({
        async pull(controller) {
          const sent = Math.round((Date.now() - started) / (idleMs / 2));
          if (sent >= pieces) return controller.close();
          await new Promise((resolve) => setTimeout(resolve, idleMs / 2));
          controller.enqueue(image.subarray(sent * step, (sent + 1) * step));
        },
      }),
    } as RequestInit);
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ state: "available", size: image.length });
    expect(Date.now() - started).toBeGreaterThan(4 * idleMs);
  });

  it.each([
    ["", ""],
    [" that asked for its connection", `Connection: upgrade\r\nUpgrade: ${CONNECTION_BODY_UPGRADE}\r\n`],
  ])(
    "cuts a client%s that sends the head of a whole-image PUT and part of its body, then stalls",
    async (_, upgrade) => {
      const token = await keys.token("img-stall", 1, "dc-a", "upload");
      const socket = connect(manager.port, "127.0.0.1");
      await new Promise((resolve) => socket.once("connect", resolve));
      let received = "";
      socket.on("data", (data: Buffer) => {
        received += data.toString();
      });
      const started = Date.now();
      socket.write(
        `PUT /v1/uploads/img-stall/versions/1/image HTTP/1.1\r\nHost: x\r\n${upgrade}Authorization: Bearer ${token}\r\nContent-Length: 1048576\r\n\r\n`,
      );
      socket.write(Buffer.alloc(64 * 1024, 1));
      await new Promise((resolve) => socket.once("close", resolve));
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(received).toBe("");
    },
  );
});
