// A host agent's cache of the image versions its guests boot from. It is an image store of
// its own (store/image-store.ts) filled from the datacenter manager's store with the chunk
// protocol managers use between datacenters (transfer/pull.ts), the manager being the only
// source and the host's session token the credential (hosts/sessions.ts). Only the chunks
// the cache lacks move: a second version, or another image sharing chunks, costs what is new.
// Every chunk is verified on arrival and the whole version against the assignment's digest
// before its file is handed out. Versions are collected least recently used first, down to a
// size bound, never one a guest boots from; the last-use times survive a restart.
import { mkdir, readdir, readFile, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { replaceFileDurably } from "../../common/files.ts";
import type { Manifest } from "../../common/image-format/manifest.ts";
import type { HostImage } from "../../schemas/hosts.ts";
import { ImageStore, type VersionRecord } from "../store/image-store.ts";
import { pullImageVersion } from "../transfer/pull.ts";

/** The manager's URL and the host's session token. */
export interface ImageCacheSource {
  url: string;
  token: string;
}

export interface ImageCacheOptions {
  /** The most bytes the cache should hold on disk once collected. */
  limitBytes: number;
  log?: (line: string) => void;
}

/** Where the last-use times are kept, beside the store. */
const LAST_USE_FILE = "last-use.json";

/**
 * The cache's store checks nothing the manager has not: a version's manifest must match the
 * size and digest the manager assigned, and the manager applied its own limits at upload.
 */
const UNLIMITED = {
  maxImageBytes: Number.MAX_SAFE_INTEGER,
  maxChunks: Number.MAX_SAFE_INTEGER,
  maxManifestBytes: Number.MAX_SAFE_INTEGER,
};

interface Fetch {
  done: Promise<{ record: VersionRecord; bytesReceived: number }>;
  abort: AbortController;
  /** Calls waiting for it: when every one of them gives up (their signals), it stops. */
  waiters: number;
  /** Its bytes were told to one caller (the others are told 0). */
  told: boolean;
}

function keyOf(imageId: string, version: number): string {
  return `${imageId}@${version}`;
}

/** The store keeps bare hex; assignments carry `sha256:<hex>`. */
function bareDigest(digest: string): string {
  const hex = digest.replace(/^sha256:/i, "").toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex))
    throw new Error(`image digest ${JSON.stringify(digest)} is not sha256:<hex>`);
  return hex;
}

/** Bytes of a version's data that its assembled file holds (zero runs are holes). */
function dataBytes(manifest: Manifest): number {
  let total = 0;
  for (const chunk of manifest.chunks) if (!chunk.zero) total += chunk.length;
  return total;
}

async function sizeOnDisk(path: string, allocated: boolean): Promise<number> {
  try {
    const info = await stat(path);
    return allocated ? Math.min(info.blocks * 512, info.size) : info.size;
  } catch (error) {
    // Renamed or deleted while it was counted (a version completing, a collection).
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return 0;
    throw error;
  }
}

async function names(dir: string): Promise<string[]> {
  return readdir(dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return [];
    throw error;
  });
}

export class HostImageCache {
  readonly dir: string;
  readonly limitBytes: number;
  readonly #store: ImageStore;
  readonly #log: (line: string) => void;
  /** Last use of each version ("imageId@version" → ms since the epoch, strictly increasing). */
  readonly #lastUse: Map<string, number>;
  readonly #fetches = new Map<string, Fetch>();
  readonly #dataBytes = new Map<string, number>();
  #latest = 0;
  #bytes = 0;
  #collecting: Promise<unknown> | undefined;
  #saving: Promise<void> = Promise.resolve();
  #nextSave: Promise<void> | undefined;
  #closed = false;

  private constructor(
    dir: string,
    store: ImageStore,
    options: ImageCacheOptions,
    lastUse: Map<string, number>,
  ) {
    this.dir = dir;
    this.limitBytes = options.limitBytes;
    this.#store = store;
    this.#log = options.log ?? (() => {});
    this.#lastUse = lastUse;
    for (const stamp of lastUse.values()) this.#latest = Math.max(this.#latest, stamp);
  }

  static async open(dir: string, options: ImageCacheOptions): Promise<HostImageCache> {
    // Absolute, so the paths handed out compare with what the agent passes to collect.
    const root = resolve(dir);
    await mkdir(root, { recursive: true });
    const store = await ImageStore.open(join(root, "store"), { limits: UNLIMITED });
    const lastUse = new Map<string, number>();
    try {
      const saved = JSON.parse(await readFile(join(root, LAST_USE_FILE), "utf8")) as unknown;
      if (saved && typeof saved === "object") {
        for (const [key, stamp] of Object.entries(saved))
          if (typeof stamp === "number") lastUse.set(key, stamp);
      }
    } catch (error) {
      // None yet, or unreadable: every version counts as used long ago, collected first.
      if ((error as NodeJS.ErrnoException).code !== "ENOENT")
        options.log?.(`[WARN] image cache: last-use times unreadable, starting without: ${error}`);
    }
    const held = new Set(store.listVersions().map((record) => keyOf(record.imageId, record.version)));
    for (const key of lastUse.keys()) if (!held.has(key)) lastUse.delete(key);
    const cache = new HostImageCache(root, store, options, lastUse);
    cache.#bytes = await cache.#measure();
    return cache;
  }

  /**
   * The version's file, fetched from `source` first when not cached (only missing chunks,
   * every chunk verified, the whole version verified against image.digest before it is used);
   * concurrent calls for one version share one fetch. Marks it used now. `bytesReceived` is
   * the chunk data the fetch received, told to one caller only (the first still waiting when
   * it ends; the others and a cached version are told 0), so concurrent calls' figures add up.
   * Aborting `signal` gives up this call; the shared fetch stops when every caller has.
   */
  async ensure(
    image: HostImage,
    source: ImageCacheSource,
    signal?: AbortSignal,
  ): Promise<{ path: string; format: "raw" | "qcow2"; bytesReceived: number }> {
    const key = keyOf(image.image_id, image.version);
    const digest = bareDigest(image.digest);
    // A collection decides on a store that does not change under it.
    while (this.#collecting) await this.#collecting.catch(() => {});
    this.#checkOpen();
    signal?.throwIfAborted();
    // From here to the fetch's registration nothing waits: one fetch per version.
    const held = this.#store.getVersion(image.image_id, image.version);
    let fetch = this.#fetches.get(key);
    if (!fetch && held?.state === "available" && held.digest === digest)
      return this.#use(key, held, image, 0);
    if (!fetch || fetch.abort.signal.aborted) {
      // A fetch everyone gave up on is let go of the store before the next one begins.
      fetch = this.#startFetch(key, image, digest, source, fetch?.done);
    }
    const { record, bytesReceived } = await this.#join(fetch, signal);
    return this.#use(key, record, image, bytesReceived);
  }

  /** Versions held complete, "imageId@version", most recently used first. */
  cached(): string[] {
    return this.#store
      .listVersions()
      .filter((record) => record.state === "available")
      .map((record) => keyOf(record.imageId, record.version))
      .sort((a, b) => (this.#lastUse.get(b) ?? 0) - (this.#lastUse.get(a) ?? 0));
  }

  /**
   * Bytes the cache holds on disk (chunks + assembled files): its packs, the data of each
   * assembled file (not its holes), partial files of versions being fetched, manifests and
   * records. Counted when the cache opens and after each fetch and collection.
   */
  bytes(): number {
    return this.#bytes;
  }

  /**
   * Removes least recently used versions not in `inUse` (paths of files guests boot from)
   * until bytes() ≤ limitBytes. Fetches under way finish first (their versions are kept);
   * ensures called meanwhile wait for the collection. A version just ensured but not yet
   * booted belongs in `inUse` as well. Versions an interrupted fetch left incomplete are
   * candidates like the others.
   */
  async collect(inUse: ReadonlySet<string>): Promise<{ removed: string[] }> {
    while (this.#collecting) await this.#collecting.catch(() => {});
    this.#checkOpen();
    const run = this.#collect(inUse);
    this.#collecting = run;
    try {
      return await run;
    } finally {
      if (this.#collecting === run) this.#collecting = undefined;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#collecting?.catch(() => {});
    for (const fetch of this.#fetches.values()) fetch.abort.abort(new Error("the image cache is closing"));
    await Promise.allSettled([...this.#fetches.values()].map((fetch) => fetch.done));
    await this.#saving;
    await this.#store.close();
  }

  #checkOpen(): void {
    if (this.#closed) throw new Error("the image cache is closed");
  }

  #startFetch(
    key: string,
    image: HostImage,
    digest: string,
    source: ImageCacheSource,
    previous: Promise<unknown> | undefined,
  ): Fetch {
    const abort = new AbortController();
    const store = this.#store;
    const { image_id: imageId, version } = image;
    const run = async () => {
      await previous?.catch(() => {});
      abort.signal.throwIfAborted();
      const held = store.getVersion(imageId, version);
      if (held?.state === "available" && held.digest !== digest) {
        // Versions never change: a copy with another digest is not the manager's. Fetched again.
        this.#log(
          `[WARN] image cache: ${key} held with digest ${held.digest}, not ${digest}: fetching it again`,
        );
        await store.deleteVersion(imageId, version);
      }
      const began = performance.now();
      let bytesReceived = 0;
      let bytesTotal = image.size;
      try {
        const record = await pullImageVersion({
          store,
          imageId,
          version,
          expectedDigest: digest,
          expectedSize: image.size,
          sources: [{ url: source.url, token: source.token }],
          signal: abort.signal,
          onProgress: (progress) => {
            bytesReceived = progress.bytesReceived;
            bytesTotal = progress.bytesTotal;
          },
        });
        const seconds = ((performance.now() - began) / 1000).toFixed(1);
        this.#log(
          `image cache: fetched ${key} (${bytesTotal} bytes) in ${seconds} s, ${bytesReceived} bytes of chunks received`,
        );
        return { record, bytesReceived };
      } finally {
        this.#bytes = await this.#measure().catch(() => this.#bytes);
      }
    };
    const fetch: Fetch = { abort, waiters: 0, told: false, done: Promise.resolve() as never };
    fetch.done = run().finally(() => {
      if (this.#fetches.get(key) === fetch) this.#fetches.delete(key);
    });
    // Nobody may be waiting when it fails (every caller gave up): not an unhandled rejection.
    fetch.done.catch(() => {});
    this.#fetches.set(key, fetch);
    return fetch;
  }

  /** Waits for a fetch on behalf of one caller, who may give up on it with `signal`. */
  #join(
    fetch: Fetch,
    signal: AbortSignal | undefined,
  ): Promise<{ record: VersionRecord; bytesReceived: number }> {
    fetch.waiters++;
    let left = false;
    const leave = () => {
      if (left) return false;
      left = true;
      fetch.waiters--;
      return true;
    };
    return new Promise((resolveWait, rejectWait) => {
      const onAbort = () => {
        if (!leave()) return;
        if (fetch.waiters === 0) fetch.abort.abort(signal?.reason);
        rejectWait(signal?.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      fetch.done.then(
        (result) => {
          signal?.removeEventListener("abort", onAbort);
          if (!leave()) return;
          const told = fetch.told;
          fetch.told = true;
          resolveWait(told ? { ...result, bytesReceived: 0 } : result);
        },
        (error: unknown) => {
          signal?.removeEventListener("abort", onAbort);
          if (leave()) rejectWait(error);
        },
      );
    });
  }

  #use(
    key: string,
    record: VersionRecord,
    image: HostImage,
    bytesReceived: number,
  ): Promise<{ path: string; format: "raw" | "qcow2"; bytesReceived: number }> {
    if (record.format !== image.format) {
      throw new Error(`image ${key} is ${record.format} here, not the ${image.format} its assignment names`);
    }
    if (!record.localId) throw new Error(`image ${key} has no file here`);
    const path = this.#store.imagePath(record.localId);
    const stamp = Math.max(Date.now(), this.#latest + 1);
    this.#latest = stamp;
    this.#lastUse.set(key, stamp);
    return this.#save().then(() => ({ path, format: image.format, bytesReceived }));
  }

  async #collect(inUse: ReadonlySet<string>): Promise<{ removed: string[] }> {
    await Promise.allSettled([...this.#fetches.values()].map((fetch) => fetch.done));
    this.#bytes = await this.#measure();
    const removed: string[] = [];
    if (this.#bytes <= this.limitBytes) return { removed };
    const store = this.#store;
    const candidates = store
      .listVersions()
      .filter((record) => !(record.localId && inUse.has(store.imagePath(record.localId))))
      .map((record) => ({ record, key: keyOf(record.imageId, record.version) }))
      .sort((a, b) => (this.#lastUse.get(a.key) ?? 0) - (this.#lastUse.get(b.key) ?? 0));
    for (const { record, key } of candidates) {
      if (this.#bytes <= this.limitBytes) break;
      await store.deleteVersion(record.imageId, record.version);
      // Chunks it shared with a version kept stay (packed, or stored by that version's file).
      await store.collectGarbage();
      this.#lastUse.delete(key);
      this.#dataBytes.delete(key);
      removed.push(key);
      const before = this.#bytes;
      this.#bytes = await this.#measure();
      this.#log(`image cache: removed ${key} (least recently used), ${before - this.#bytes} bytes freed`);
    }
    if (removed.length > 0) await this.#save();
    if (this.#bytes > this.limitBytes) {
      this.#log(
        `[WARN] image cache: ${this.#bytes} bytes held, over the ${this.limitBytes} limit: the rest is in use`,
      );
    }
    return { removed };
  }

  /** Writes the last-use times (atomically; writes queued meanwhile are made once). */
  #save(): Promise<void> {
    if (this.#nextSave) return this.#nextSave;
    const next = this.#saving
      .then(() => {
        this.#nextSave = undefined;
        const times = JSON.stringify(Object.fromEntries(this.#lastUse));
        return replaceFileDurably(join(this.dir, LAST_USE_FILE), times);
      })
      .catch((error: unknown) => {
        // The order is then that of the last write: worth a warning, not a failed boot.
        this.#log(`[WARN] image cache: could not write the last-use times: ${error}`);
      });
    this.#nextSave = next;
    this.#saving = next;
    return next;
  }

  async #measure(): Promise<number> {
    const root = this.#store.dataDir;
    let total = 0;
    for (const name of await names(join(root, "chunks")))
      total += await sizeOnDisk(join(root, "chunks", name), false);
    for (const imageId of await names(join(root, "versions"))) {
      const dir = join(root, "versions", imageId);
      for (const name of await names(dir)) {
        total += await sizeOnDisk(join(dir, name), name.endsWith(".partial"));
      }
    }
    for (const name of await names(join(root, "images"))) {
      const record = this.#store.findByLocalId(name.replace(/\.img$/, ""));
      const key = record && keyOf(record.imageId, record.version);
      const manifest = record && this.#store.getManifest(record.imageId, record.version);
      if (!key || !manifest) {
        total += await sizeOnDisk(join(root, "images", name), true);
        continue;
      }
      let bytes = this.#dataBytes.get(key);
      if (bytes === undefined) {
        bytes = dataBytes(manifest);
        this.#dataBytes.set(key, bytes);
      }
      total += bytes;
    }
    return total;
  }
}
