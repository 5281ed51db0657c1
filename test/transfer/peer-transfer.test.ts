import { execFileSync } from "node:child_process";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { uploadImage } from "../../client/upload.ts";
import { chunkFile } from "../../common/image-format/chunk-file.ts";
import { sha256Hex } from "../../common/image-format/digest.ts";
import { manifestDigest } from "../../common/image-format/manifest-digest.ts";
import { VersionPulls } from "../../regional-manager/replicas/pulls.ts";
import { ImageStore, type VersionRecord } from "../../regional-manager/store/image-store.ts";
import { pullImageVersion } from "../../regional-manager/transfer/pull.ts";
import { type ManagerProcess, seededBytes, startManager, type TestKeys } from "../support/transfer.ts";
import { type ProxiedSource, startProxiedSource } from "./proxied-source.ts";
import type { TransferProxy } from "./proxy.ts";

interface PullAnswer {
  status: number;
  body: VersionRecord & { code?: string; detail?: string };
}

describe("peer transfer between managers", () => {
  let fixture: ProxiedSource;
  let dir: ProxiedSource["dir"];
  let keys: TestKeys;
  let source: ManagerProcess;
  let proxy: TransferProxy;
  const image = seededBytes(8 << 20, 51);
  image.fill(0, 6 << 20, 7 << 20);
  const digest = sha256Hex(image);
  // The 1 MiB zero run is never sent; the chunks straddling its edges carry a few zeros.
  const sentBytes = (size: number) => size - (1 << 20);

  beforeAll(async () => {
    fixture = await startProxiedSource("peer", "img-p", image);
    ({ dir, keys, source, proxy } = fixture);
  });
  afterAll(() => fixture.close());

  async function target(name: string, dataDir = join(dir.path, name)): Promise<ManagerProcess> {
    return startManager({ dataDir, datacenter: `dc-${name}`, publicKeyFile: keys.publicKeyFile });
  }

  async function pull(
    manager: ManagerProcess,
    version: number,
    options: {
      attempts?: number;
      batchBytes?: number;
      expectedDigest?: string;
      expectedSize?: number;
      expectedManifestDigest?: string;
    } = {},
  ): Promise<PullAnswer> {
    const response = await fetch(`${manager.url}/_test/pull`, {
      method: "POST",
      body: JSON.stringify({
        imageId: "img-p",
        version,
        expectedDigest: options.expectedDigest ?? digest,
        expectedSize: options.expectedSize ?? image.length,
        sources: [{ url: proxy.url, token: await keys.token("img-p", version, "dc-a", "read") }],
        attempts: options.attempts ?? 3,
        batchBytes: options.batchBytes ?? 1 << 20,
        ...(options.expectedManifestDigest ? { expectedManifestDigest: options.expectedManifestDigest } : {}),
      }),
    });
    return { status: response.status, body: (await response.json()) as PullAnswer["body"] };
  }

  /** Opens a stopped manager's store and checks every chunk against its digest. */
  async function verifyStore(dataDir: string): Promise<number> {
    const store = await ImageStore.open(dataDir);
    const digests = [...store.chunks.digests()];
    let i = 0;
    let bytes = 0;
    for await (const data of store.chunks.readMany(digests)) {
      expect(sha256Hex(data)).toBe(digests[i++]);
      bytes += data.length;
    }
    await store.close();
    return bytes;
  }

  function reset(): void {
    proxy.reset();
    proxy.corrupt = undefined;
    proxy.corruptPatches = undefined;
    proxy.refuse = undefined;
    proxy.bytesPerSecond = undefined;
    proxy.target = source.url;
  }

  it("pulls a version it lacks, verified, registered under a local id, then a new version as a delta", async () => {
    reset();
    const b = await target("b");
    const first = await pull(b, 1);
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ state: "available", digest, size: image.length });
    expect(first.body.localId).toMatch(/^img-[0-9a-f]{16}$/);
    const wire = proxy.bytes;
    expect(wire).toBeGreaterThan(sentBytes(image.length));
    expect(wire).toBeLessThan(sentBytes(image.length) + (256 << 10));
    // Its file reads and writes ran on 16 threads (common/process-tuning.ts), not libuv's 4.
    expect((await readdir(`/proc/${b.child.pid}/task`)).length).toBeGreaterThan(16);
    await b.kill("SIGTERM");
    const store = await ImageStore.open(join(dir.path, "b"));
    expect((await readFile(store.imagePath(first.body.localId as string))).equals(image)).toBe(true);
    await store.close();

    // An adaptation block: version 2 changes 3 scattered 4 KiB blocks.
    const v2 = Buffer.from(image);
    for (const at of [100_000, 3_000_000, 7_500_000]) seededBytes(4096, at).copy(v2, at);
    await writeFile(join(dir.path, "v2.raw"), v2);
    await uploadImage({
      path: join(dir.path, "v2.raw"),
      managerUrl: source.url,
      token: await keys.token("img-p", 2, "dc-a", "upload"),
      imageId: "img-p",
      version: 2,
    });
    const b2 = await target("b");
    proxy.reset();
    const second = await pull(b2, 2, { expectedDigest: sha256Hex(v2), expectedSize: v2.length });
    expect(second.status).toBe(200);
    expect(second.body.state).toBe("available");
    // Only the changed blocks cross, as patches of the chunks holding them, and the manifest's delta.
    expect(proxy.patchRequests).toBe(1);
    expect(proxy.chunkRequests).toBe(0);
    expect(proxy.bytes).toBeGreaterThan(3 * 4096);
    expect(proxy.bytes).toBeLessThan(3 * 4096 + 8 * 1024);
    await b2.kill("SIGTERM");
    const store2 = await ImageStore.open(join(dir.path, "b"));
    expect((await readFile(store2.imagePath(second.body.localId as string))).equals(v2)).toBe(true);
    await store2.close();
  });

  /** Uploads `image` with two 4 KiB blocks changed as `version`; answers its bytes. */
  async function uploadVariant(version: number, seed: number): Promise<Buffer> {
    const next = Buffer.from(image);
    for (const at of [200_000 + seed, 4_000_000 + seed]) seededBytes(4096, seed).copy(next, at);
    await writeFile(join(dir.path, `v${version}.raw`), next);
    await uploadImage({
      path: join(dir.path, `v${version}.raw`),
      managerUrl: source.url,
      token: await keys.token("img-p", version, "dc-a", "upload"),
      imageId: "img-p",
      version,
    });
    return next;
  }

  /** Pulls `version` (bytes `expected`) into a manager holding version 1; checks the image it assembled. */
  async function pullOverVersion1(name: string, version: number, expected: Buffer): Promise<void> {
    const manager = await target(name);
    expect((await pull(manager, 1)).status).toBe(200);
    proxy.reset();
    const answer = await pull(manager, version, {
      expectedDigest: sha256Hex(expected),
      expectedSize: expected.length,
    });
    expect(answer.body).toMatchObject({ state: "available" });
    await manager.kill("SIGTERM");
    const store = await ImageStore.open(join(dir.path, name));
    expect((await readFile(store.imagePath(answer.body.localId as string))).equals(expected)).toBe(true);
    await store.close();
  }

  it("fetches whole a chunk whose patch does not rebuild it, and stores nothing unverified", async () => {
    reset();
    const v3 = await uploadVariant(3, 3);
    // A byte of the first chunk's changed block, flipped in transit: the rebuilt chunk fails its digest.
    proxy.corruptPatches = (index) => (index === 0 ? 100 : undefined);
    await pullOverVersion1("patch-corrupt", 3, v3);
    expect(proxy.patchRequests).toBe(1);
    expect(proxy.chunkRequests).toBe(1);
  });

  it("pulls the changed chunks whole from a source that does not serve patches", async () => {
    reset();
    const v4 = await uploadVariant(4, 4);
    proxy.refuse = (path) => path.endsWith("/patches");
    await pullOverVersion1("patch-refused", 4, v4);
    expect(proxy.chunkRequests).toBe(1);
    // The changed chunks themselves, far more than the changed blocks.
    expect(proxy.bytes).toBeGreaterThan(4 * 4096);
  });

  it("serves a pulled replica, whose chunks live in its image, to the next manager", async () => {
    reset();
    const b = await target("relay-b");
    expect((await pull(b, 1)).status).toBe(200);
    await b.kill("SIGTERM");
    // Restarted: the chunks are found again in the available image (no pack holds them).
    const relay = await target("relay-b", join(dir.path, "relay-b"));
    const c = await target("relay-c");
    const response = await fetch(`${c.url}/_test/pull`, {
      method: "POST",
      body: JSON.stringify({
        imageId: "img-p",
        version: 1,
        expectedDigest: digest,
        expectedSize: image.length,
        sources: [{ url: relay.url, token: await keys.token("img-p", 1, "dc-relay-b", "read") }],
        batchBytes: 1 << 20,
      }),
    });
    const answer = (await response.json()) as VersionRecord;
    expect(response.status).toBe(200);
    expect(answer.state).toBe("available");
    await c.kill("SIGTERM");
    await relay.kill("SIGTERM");
    const store = await ImageStore.open(join(dir.path, "relay-c"));
    expect((await readFile(store.imagePath(answer.localId as string))).equals(image)).toBe(true);
    await store.close();
  });

  it("rejects a wrong whole-image digest or size before transferring chunks", async () => {
    reset();
    const c = await target("wrong-digest");
    const wrongDigest = await pull(c, 1, { expectedDigest: sha256Hex(Buffer.from("x")) });
    expect(wrongDigest.status).toBe(400);
    expect(wrongDigest.body).toMatchObject({
      code: "invalid_manifest",
      errors: [expect.objectContaining({ path: "digest" })],
    });
    const wrongSize = await pull(c, 1, { expectedSize: image.length + 1 });
    expect(wrongSize.body).toMatchObject({
      code: "invalid_manifest",
      errors: [expect.objectContaining({ path: "size" })],
    });
    expect(proxy.chunkRequests).toBe(0);
    await c.kill();
  });

  it("with the catalog's manifest digest, refuses another manifest before any chunk, and needs no second pass", async () => {
    reset();
    await writeFile(join(dir.path, "v1.raw"), image);
    const vouched = manifestDigest(await chunkFile(join(dir.path, "v1.raw")));
    const d = await target("manifest-digest");
    const refused = await pull(d, 1, { expectedManifestDigest: `sha256:${"00".repeat(32)}`, attempts: 1 });
    expect(refused.status).toBe(422);
    expect(refused.body).toMatchObject({ code: "manifest_digest_mismatch" });
    expect(proxy.chunkRequests).toBe(0);
    const pulled = await pull(d, 1, { expectedManifestDigest: vouched });
    expect(pulled.status).toBe(200);
    expect(pulled.body).toMatchObject({
      state: "available",
      digest,
      manifestDigest: vouched,
      manifestVerified: true,
    });
    await d.kill("SIGTERM");
    const store = await ImageStore.open(join(dir.path, "manifest-digest"));
    expect((await readFile(store.imagePath(pulled.body.localId as string))).equals(image)).toBe(true);
    await store.close();
  });

  it("rejects a chunk corrupted in transit, never stores it, and gets it again", async () => {
    reset();
    const c = await target("corrupt");
    proxy.corrupt = () => 100_000; // every response: a byte inside some chunk
    const failed = await pull(c, 1, { attempts: 1, batchBytes: 64 << 20 });
    expect(failed.status).toBe(502);
    expect(failed.body.code).toBe("pull_failed");
    expect(failed.body.detail).toMatch(/does not match its digest/);
    proxy.corrupt = (index) => (index === 0 ? 2_000_000 : undefined); // only the next response
    const recovered = await pull(c, 1, { attempts: 2, batchBytes: 64 << 20 });
    expect(recovered.status).toBe(200);
    await c.kill("SIGTERM");
    await verifyStore(join(dir.path, "corrupt"));
    const store = await ImageStore.open(join(dir.path, "corrupt"));
    expect((await readFile(store.imagePath(recovered.body.localId as string))).equals(image)).toBe(true);
    await store.close();
  });

  it("survives the source being killed mid-transfer and resumes from what it stored", async () => {
    reset();
    const c = await target("source-killed");
    proxy.bytesPerSecond = 4 << 20;
    const pulling = pull(c, 1, { attempts: 1, batchBytes: 512 << 10 });
    // progress <held> <total> <received>: held counts the zero run from the start.
    await c.waitForLine(/^progress \d+ \d+ \d+$/);
    await c.waitForLine(/^progress \d+ \d+ ([2-9]\d{6})$/); // >= 2 MB received
    await source.kill();
    const failed = await pulling;
    expect(failed.status).toBe(502);

    source = await startManager({
      dataDir: join(dir.path, "source"),
      datacenter: "dc-a",
      publicKeyFile: keys.publicKeyFile,
    });
    proxy.target = source.url;
    proxy.bytesPerSecond = undefined;
    proxy.reset();
    const stored = ((await (await fetch(`${c.url}/_test/stats`)).json()) as { chunkBytes: number })
      .chunkBytes;
    expect(stored).toBeGreaterThan(1 << 20);
    const resumed = await pull(c, 1);
    expect(resumed.status).toBe(200);
    expect(resumed.body.digest).toBe(digest);
    // What was stored before the source died does not move again (slack: manifest and headers).
    expect(proxy.bytes).toBeLessThanOrEqual(sentBytes(image.length) - stored + (256 << 10));
    await c.kill();
  });

  it("resumes after the target is killed mid-transfer without fetching stored chunks again", async () => {
    reset();
    const dataDir = join(dir.path, "target-killed");
    const c = await target("target-killed", dataDir);
    proxy.bytesPerSecond = 4 << 20;
    const pulling = pull(c, 1, { batchBytes: 512 << 10 }).catch(() => undefined);
    await c.waitForLine(/^progress \d+ \d+ ([3-9]\d{6})$/); // >= 3 MB received
    await c.kill("SIGKILL");
    await pulling;
    // Progress counts chunks received; those whose bytes are intact after the kill must not move again.
    const stored = await verifyStore(dataDir);
    expect(stored).toBeGreaterThan(1 << 20);

    proxy.bytesPerSecond = undefined;
    proxy.reset();
    const restarted = await target("target-killed", dataDir);
    const resumed = await pull(restarted, 1);
    expect(resumed.status).toBe(200);
    const progress = restarted.lines
      .filter((line) => line.startsWith("progress"))
      .map((line) => line.split(" ").slice(1).map(Number) as [number, number, number]);
    // Of the whole version: the resumed pull starts from what the store held, never shows
    // more done than the total, and ends at total/total.
    expect(progress[0]?.[0]).toBeGreaterThanOrEqual(stored);
    for (const [done, total] of progress) {
      expect(total).toBe(image.length);
      expect(done).toBeLessThanOrEqual(total);
    }
    expect(progress.at(-1)?.slice(0, 2)).toEqual([image.length, image.length]);
    // Slack for the manifest, digest lists and record headers.
    const slack = 256 << 10;
    expect(progress.at(-1)?.[2]).toBeLessThanOrEqual(sentBytes(image.length) - stored + slack);
    expect(proxy.bytes).toBeLessThanOrEqual(sentBytes(image.length) - stored + slack);
    await restarted.kill("SIGTERM");
    const store = await ImageStore.open(dataDir);
    expect((await readFile(store.imagePath(resumed.body.localId as string))).equals(image)).toBe(true);
    await store.close();
  });

  it("does the work once when two transfers of the same version run at once", async () => {
    reset();
    const c = await target("twice");
    proxy.bytesPerSecond = 16 << 20;
    const [one, two] = await Promise.all([pull(c, 1), pull(c, 1)]);
    expect(one.status).toBe(200);
    expect(two.status).toBe(200);
    expect(two.body.localId).toBe(one.body.localId);
    expect(proxy.bytes).toBeLessThan(sentBytes(image.length) + (256 << 10));
    await c.kill();
  });

  it("shares one pull between callers in one process", async () => {
    reset();
    const store = await ImageStore.open(join(dir.path, "in-process"));
    const options = {
      store,
      imageId: "img-p",
      version: 1,
      expectedDigest: digest,
      expectedSize: image.length,
      sources: [{ url: proxy.url, token: await keys.token("img-p", 1, "dc-a", "read") }],
    };
    const pulls = new VersionPulls({
      pull: (_imageId, _version, signal) => pullImageVersion({ ...options, signal }),
      held: (imageId, version) => store.getVersion(imageId, version),
    });
    const first = pulls.ensure("img-p", 1);
    const second = pulls.ensure("img-p", 1);
    expect(second).toBe(first);
    const record = await first;
    expect(proxy.chunkRequests).toBeGreaterThan(0);
    proxy.reset();
    // Held now: neither layer asks the source again.
    expect((await pulls.ensure("img-p", 1)).localId).toBe(record.localId);
    expect((await pullImageVersion(options)).localId).toBe(record.localId);
    expect(proxy.chunkRequests).toBe(0);
    await store.close();
  });

  it("fails clearly when the target's disk fills up and leaves nothing corrupt", async () => {
    reset();
    const mountPoint = join(dir.path, "small-disk");
    await mkdir(mountPoint);
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=6m", "tmpfs", mountPoint]);
    let c: ManagerProcess | undefined;
    try {
      c = await target("full", join(mountPoint, "data"));
      const failed = await pull(c, 1);
      expect(failed.status).toBe(507);
      expect(failed.body.code).toBe("disk_full");
      await c.kill("SIGTERM");
      await verifyStore(join(mountPoint, "data"));
      const store = await ImageStore.open(join(mountPoint, "data"));
      expect(store.getVersion("img-p", 1)?.state).not.toBe("available");
      await store.close();
    } finally {
      await c?.kill(); // nothing may keep the small disk busy
      execFileSync("umount", [mountPoint]);
    }
  });
});
