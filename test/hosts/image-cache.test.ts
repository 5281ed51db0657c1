// A host agent's image cache, filled from a manager's store through the real transfer app on a
// loopback port (behind the counting, corrupting proxy of the transfer tests), with the host's
// session token as the only credential.
import { readFileSync } from "node:fs";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type ServerType, serve } from "@hono/node-server";
import { importJWK, type JWK } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { uploadImage } from "../../client/upload.ts";
import { chunkFile } from "../../common/image-format/chunk-file.ts";
import { sha256Hex } from "../../common/image-format/digest.ts";
import type { Manifest } from "../../common/image-format/manifest.ts";
import { ControlPlaneTokenError, createTransferTokenVerifier } from "../../common/tokens/transfer-token.ts";
import { HostImageCache, type ImageCacheSource } from "../../regional-manager/host-agent/image-cache.ts";
import { HostSessions, withHostReads } from "../../regional-manager/hosts/sessions.ts";
import { ImageStore } from "../../regional-manager/store/image-store.ts";
import { createTransferApp } from "../../regional-manager/transfer/app.ts";
import type { HostImage } from "../../schemas/hosts.ts";
import { createTestKeys, seededBytes, type TestKeys, temporaryDir } from "../support/transfer.ts";
import { startProxy, type TransferProxy } from "../transfer/proxy.ts";

const MiB = 1 << 20;
const DC = "dc-a";

/** A 26-character image ID in the catalog's alphabet. */
const imageId = (letter: string) => `img_${letter.repeat(26)}`;

interface Uploaded {
  image: HostImage;
  data: Buffer;
  /** Distinct non-zero chunk bytes: what a cache that holds none of them receives. */
  distinctBytes: number;
  manifest: Manifest;
}

function distinctBytes(manifest: Manifest): number {
  const lengths = new Map<string, number>();
  for (const chunk of manifest.chunks) if (!chunk.zero) lengths.set(chunk.digest, chunk.length);
  return [...lengths.values()].reduce((a, b) => a + b, 0);
}

describe("a host's image cache, filled from its manager's store", () => {
  let dir: Awaited<ReturnType<typeof temporaryDir>>;
  let keys: TestKeys;
  let managerStore: ImageStore;
  let sessions: HostSessions;
  let server: ServerType;
  let managerUrl: string;
  let proxy: TransferProxy;
  let source: ImageCacheSource;
  let cache: HostImageCache;
  const logs: string[] = [];
  const figures: Record<string, number> = {};

  async function upload(id: string, data: Buffer, version = 1): Promise<Uploaded> {
    const path = join(dir.path, `${id}-${version}.raw`);
    await writeFile(path, data);
    const manifest = await chunkFile(path);
    await uploadImage({
      path,
      managerUrl,
      token: await keys.token(id, version, DC, "upload"),
      imageId: id,
      version,
      manifest,
    });
    return {
      image: { image_id: id, version, format: "raw", digest: `sha256:${sha256Hex(data)}`, size: data.length },
      data,
      distinctBytes: distinctBytes(manifest),
      manifest,
    };
  }

  const key = (u: Uploaded) => `${u.image.image_id}@${u.image.version}`;

  let a: Uploaded;
  let b: Uploaded;

  beforeAll(async () => {
    dir = await temporaryDir("host-image-cache");
    keys = await createTestKeys(dir.path);
    managerStore = await ImageStore.open(join(dir.path, "manager"));
    const jwk = JSON.parse(readFileSync(keys.publicKeyFile, "utf8")) as JWK;
    const publicKey = await importJWK(jwk, "EdDSA");
    if (publicKey instanceof Uint8Array) throw new Error("expected an asymmetric key");
    sessions = new HostSessions();
    const inner = createTransferTokenVerifier({ keys: { publicKey }, datacenter: DC });
    const app = createTransferApp({ store: managerStore, verifier: withHostReads(inner, sessions, DC) });
    server = await new Promise<ServerType>((resolve) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s));
    });
    const address = server.address();
    managerUrl = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
    proxy = await startProxy(managerUrl);
    source = { url: proxy.url, token: sessions.issue("host-1") };

    // Image A: 8 MiB with a 1 MiB run of zeros (never sent). Image B: A with a contiguous
    // tenth rewritten, so ~90% of its chunks are A's.
    const dataA = seededBytes(8 * MiB, 7);
    dataA.fill(0, 5 * MiB, 6 * MiB);
    a = await upload(imageId("a"), dataA);
    const dataB = Buffer.from(dataA);
    seededBytes(820 * 1024, 99).copy(dataB, 2 * MiB);
    b = await upload(imageId("b"), dataB);
    cache = await HostImageCache.open(join(dir.path, "host-1"), {
      limitBytes: 1024 * MiB,
      log: (line) => logs.push(line),
    });
  });

  afterAll(async () => {
    console.log(`image cache figures: ${JSON.stringify(figures)}`);
    await cache?.close();
    await proxy?.close();
    await new Promise<void>((resolve) => {
      if (!server) return resolve();
      server.close(() => resolve());
      (server as { closeAllConnections?: () => void }).closeAllConnections?.();
    });
    await managerStore?.close();
    await dir?.remove();
  });

  it("fetches a version's chunks once: the first ensure receives them all, a second none", async () => {
    proxy.reset();
    const first = await cache.ensure(a.image, source);
    expect(first.format).toBe("raw");
    expect(first.bytesReceived).toBe(a.distinctBytes);
    figures.firstEnsureBytes = first.bytesReceived;
    figures.firstEnsureWire = proxy.bytes;
    // The zero run never crosses; the wire adds the manifest and little else.
    expect(a.distinctBytes).toBeLessThan(7 * MiB + 128 * 1024);
    expect(proxy.bytes).toBeLessThan(a.distinctBytes + 256 * 1024);
    expect((await readFile(first.path)).equals(a.data)).toBe(true);
    expect(cache.cached()).toEqual([key(a)]);
    expect(cache.bytes()).toBeGreaterThanOrEqual(a.distinctBytes);

    proxy.reset();
    const second = await cache.ensure(a.image, source);
    expect(second).toEqual({ ...first, bytesReceived: 0 });
    expect(proxy.bytes).toBe(0);
    figures.secondEnsureBytes = second.bytesReceived;
  });

  it("fetches only what a second image sharing ~90% of the chunks adds", async () => {
    proxy.reset();
    const got = await cache.ensure(b.image, source);
    figures.sharedImageBytes = got.bytesReceived;
    figures.sharedImageSize = b.image.size;
    figures.sharedImageWire = proxy.bytes;
    expect(got.bytesReceived).toBeGreaterThan(0.09 * b.image.size);
    expect(got.bytesReceived).toBeLessThan(0.2 * b.image.size);
    expect(proxy.bytes).toBeLessThan(0.2 * b.image.size);
    expect((await readFile(got.path)).equals(b.data)).toBe(true);
    expect(cache.cached()).toEqual([key(b), key(a)]);
  });

  it("shares one fetch between concurrent ensures of a version", async () => {
    const c = await upload(imageId("c"), seededBytes(4 * MiB, 3));
    proxy.reset();
    const results = await Promise.all(Array.from({ length: 5 }, () => cache.ensure(c.image, source)));
    expect(new Set(results.map((r) => r.path)).size).toBe(1);
    const received = results.reduce((sum, r) => sum + r.bytesReceived, 0);
    figures.concurrentReceived = received;
    figures.concurrentWire = proxy.bytes;
    expect(received).toBe(c.distinctBytes);
    expect(results.filter((r) => r.bytesReceived > 0)).toHaveLength(1);
    // Once over the wire: the chunks plus the manifest.
    expect(proxy.bytes).toBeLessThan(c.distinctBytes + 256 * 1024);
    expect((await readFile(results[0]?.path as string)).equals(c.data)).toBe(true);
  });

  it("refuses corrupt chunks from the source and keeps nothing unverified", async () => {
    const d = await upload(imageId("d"), seededBytes(2 * MiB, 4));
    // Every chunk response has a byte flipped: every attempt fails on a digest.
    proxy.reset();
    proxy.corrupt = () => 100;
    await expect(cache.ensure(d.image, source)).rejects.toThrow(/digest|chunks still missing/i);
    expect(cache.cached()).not.toContain(key(d));
    // Healed: the version arrives whole and right.
    proxy.corrupt = undefined;
    const got = await cache.ensure(d.image, source);
    expect((await readFile(got.path)).equals(d.data)).toBe(true);
    // Only the first chunk response corrupted: the retry fetches what was refused.
    const e = await upload(imageId("e"), seededBytes(2 * MiB, 5));
    proxy.reset();
    proxy.corrupt = (index) => (index === 0 ? 10 : undefined);
    const healed = await cache.ensure(e.image, source);
    proxy.corrupt = undefined;
    expect((await readFile(healed.path)).equals(e.data)).toBe(true);
    expect(proxy.chunkRequests).toBeGreaterThan(1);
  });

  it("lets one caller give up without stopping the others; a fetch all gave up on resumes", async () => {
    const f = await upload(imageId("f"), seededBytes(4 * MiB, 31));
    const g = await upload(imageId("g"), seededBytes(4 * MiB, 32));
    proxy.bytesPerSecond = 4 * MiB;
    try {
      const first = new AbortController();
      const gaveUp = cache.ensure(f.image, source, first.signal);
      const stays = cache.ensure(f.image, source);
      await new Promise((resolve) => setTimeout(resolve, 300));
      first.abort(new Error("stopped by the test"));
      await expect(gaveUp).rejects.toThrow("stopped by the test");
      const stayed = await stays;
      expect((await readFile(stayed.path)).equals(f.data)).toBe(true);
      // The bytes are told to the caller that stayed.
      expect(stayed.bytesReceived).toBe(f.distinctBytes);

      const only = new AbortController();
      const stopped = cache.ensure(g.image, source, only.signal);
      await new Promise((resolve) => setTimeout(resolve, 400));
      only.abort(new Error("stopped by the test"));
      await expect(stopped).rejects.toThrow("stopped by the test");
      proxy.bytesPerSecond = undefined;
      const resumed = await cache.ensure(g.image, source);
      figures.resumedReceived = resumed.bytesReceived;
      expect(resumed.bytesReceived).toBeGreaterThan(0);
      expect(resumed.bytesReceived).toBeLessThan(g.distinctBytes);
      expect((await readFile(resumed.path)).equals(g.data)).toBe(true);
    } finally {
      proxy.bytesPerSecond = undefined;
    }
  });

  it("refuses a version whose digest is not the one assigned", async () => {
    const wrong = { ...a.image, image_id: imageId("c"), digest: `sha256:${"0".repeat(64)}` };
    const other = await HostImageCache.open(join(dir.path, "host-wrong"), { limitBytes: 1024 * MiB });
    try {
      await expect(other.ensure(wrong, source)).rejects.toThrow(/digest|size/);
      expect(other.cached()).toEqual([]);
    } finally {
      await other.close();
    }
  });

  it("collects least recently used versions not in use down to its limit, and keeps the order across a restart", async () => {
    const hostDir = join(dir.path, "host-lru");
    const x = await upload(imageId("x"), seededBytes(3 * MiB, 11));
    const y = await upload(imageId("y"), seededBytes(3 * MiB, 12));
    const z = await upload(imageId("z"), seededBytes(3 * MiB, 13));
    // Room for about two of the three.
    let lru = await HostImageCache.open(hostDir, { limitBytes: 7 * MiB });
    const px = await lru.ensure(x.image, source);
    const py = await lru.ensure(y.image, source);
    await lru.ensure(z.image, source);
    await lru.ensure(x.image, source);
    // Oldest first: y, z, x. y is in use: z goes.
    expect(lru.cached()).toEqual([key(x), key(z), key(y)]);
    const before = lru.bytes();
    expect(before).toBeGreaterThan(9 * MiB);
    const { removed } = await lru.collect(new Set([py.path]));
    expect(removed).toEqual([key(z)]);
    expect(lru.bytes()).toBeLessThanOrEqual(7 * MiB);
    figures.lruBytesBefore = before;
    figures.lruBytesAfter = lru.bytes();
    expect(lru.cached()).toEqual([key(x), key(y)]);
    // Under the limit: nothing more goes.
    expect((await lru.collect(new Set())).removed).toEqual([]);
    await lru.close();

    // A restarted agent keeps its versions and their order; with a smaller limit, y (older) goes.
    lru = await HostImageCache.open(hostDir, { limitBytes: 4 * MiB });
    expect(lru.cached()).toEqual([key(x), key(y)]);
    expect(lru.bytes()).toBe(figures.lruBytesAfter);
    const again = await lru.ensure(x.image, source);
    expect(again).toEqual({ ...px, bytesReceived: 0 });
    expect((await lru.collect(new Set())).removed).toEqual([key(y)]);
    await expect(stat(py.path)).rejects.toThrow(/ENOENT/);
    expect(lru.cached()).toEqual([key(x)]);
    await lru.close();
  });

  it("frees a collected version's bytes when another keeps its shared chunks", async () => {
    const hostDir = join(dir.path, "host-shared");
    let shared = await HostImageCache.open(hostDir, { limitBytes: 10 * MiB });
    await shared.ensure(a.image, source);
    const pb = await shared.ensure(b.image, source);
    const both = shared.bytes();
    const { removed } = await shared.collect(new Set([pb.path]));
    expect(removed).toEqual([key(a)]);
    figures.sharedBothBytes = both;
    figures.sharedAfterCollect = shared.bytes();
    // What A's file held is gone, though B still needs 90% of its chunks (B's file holds them).
    expect(shared.bytes()).toBeLessThan(b.distinctBytes + 512 * 1024);
    await shared.close();
    // B is whole after a restart, and its chunks are still served to a third version.
    shared = await HostImageCache.open(hostDir, { limitBytes: 10 * MiB });
    expect((await readFile(pb.path)).equals(b.data)).toBe(true);
    const dataB2 = Buffer.from(b.data);
    seededBytes(4096, 5).copy(dataB2, 7 * MiB);
    const b2 = await upload(b.image.image_id, dataB2, 2);
    proxy.reset();
    const got = await shared.ensure(b2.image, source);
    expect((await readFile(got.path)).equals(dataB2)).toBe(true);
    expect(got.bytesReceived).toBeLessThan(256 * 1024);
    await shared.close();
  });
});

describe("host sessions on the transfer routes", () => {
  let dir: Awaited<ReturnType<typeof temporaryDir>>;
  let keys: TestKeys;
  let store: ImageStore;
  let sessions: HostSessions;
  let app: ReturnType<typeof createTransferApp>;
  let verifier: ReturnType<typeof withHostReads>;
  const id = imageId("s");

  beforeAll(async () => {
    dir = await temporaryDir("host-sessions");
    keys = await createTestKeys(dir.path);
    store = await ImageStore.open(join(dir.path, "manager"));
    const jwk = JSON.parse(readFileSync(keys.publicKeyFile, "utf8")) as JWK;
    const publicKey = await importJWK(jwk, "EdDSA");
    if (publicKey instanceof Uint8Array) throw new Error("expected an asymmetric key");
    sessions = new HostSessions();
    verifier = withHostReads(
      createTransferTokenVerifier({ keys: { publicKey }, datacenter: DC }),
      sessions,
      DC,
    );
    app = createTransferApp({ store, verifier });
    const server = await new Promise<ServerType>((resolve) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s));
    });
    const address = server.address();
    const url = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
    await writeFile(join(dir.path, "s.raw"), seededBytes(MiB, 21));
    await uploadImage({
      path: join(dir.path, "s.raw"),
      managerUrl: url,
      token: await keys.token(id, 1, DC, "upload"),
      imageId: id,
      version: 1,
    });
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  afterAll(async () => {
    await store?.close();
    await dir?.remove();
  });

  const manifest = (token: string) =>
    app.request(`/v1/transfer/${id}/versions/1/manifest`, { headers: { authorization: `Bearer ${token}` } });

  it("lets a host session read a manifest and its chunks, and nothing else", async () => {
    const token = sessions.issue("host-1");
    expect(token).toMatch(/^gvh_[A-Za-z0-9_-]{43}$/);
    expect(sessions.hostOf(token)).toBe("host-1");
    const answer = await manifest(token);
    expect(answer.status).toBe(200);
    const digest = (store.getManifest(id, 1) as Manifest).chunks[0]?.digest as string;
    const chunks = await app.request(`/v1/transfer/${id}/versions/1/chunks`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
      body: Buffer.from(digest, "hex"),
    });
    expect(chunks.status).toBe(200);
    expect(sha256Hex(Buffer.from(await chunks.arrayBuffer()))).toBe(digest);

    // An upload (any of its routes) is refused as a wrong action: 403.
    const upload = await app.request(`/v1/uploads/${id}/versions/2/commit`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
    });
    expect(upload.status).toBe(403);
    expect(await upload.json()).toMatchObject({ code: "forbidden" });
    for (const action of ["upload", "replicate", "drop"] as const) {
      const refusal = await verifier
        .verify(token, { imageId: id, version: 1, action })
        .catch((e: unknown) => e);
      expect(refusal).toBeInstanceOf(ControlPlaneTokenError);
      expect((refusal as ControlPlaneTokenError).code).toBe("TOKEN_WRONG_ACTION");
    }
    // The control plane's read tokens still work beside them.
    expect((await manifest(await keys.token(id, 1, DC, "read"))).status).toBe(200);
  });

  it("refuses an unknown, a replaced and a revoked session", async () => {
    const unknown = await manifest(`gvh_${"A".repeat(43)}`);
    expect(unknown.status).toBe(401);
    expect(await unknown.json()).toMatchObject({ code: "unauthenticated" });
    expect(sessions.hostOf(undefined)).toBeUndefined();

    const old = sessions.issue("host-2");
    const current = sessions.issue("host-2");
    expect((await manifest(old)).status).toBe(401);
    expect((await manifest(current)).status).toBe(200);
    sessions.revoke("host-2");
    expect(sessions.hostOf(current)).toBeUndefined();
    expect((await manifest(current)).status).toBe(401);
    // Other hosts' sessions are untouched.
    const other = sessions.issue("host-3");
    expect((await manifest(other)).status).toBe(200);
  });
});
