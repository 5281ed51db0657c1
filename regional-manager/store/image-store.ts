import { randomBytes } from "node:crypto";
import { type FileHandle, mkdir, open, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { replaceFileDurably, syncDirectory } from "../../common/files.ts";
import {
  type ChunkRef,
  decodeManifest,
  encodeManifest,
  type Manifest,
  type ManifestExpectations,
  referencedDigests,
  validateManifest,
} from "../../common/image-format/manifest.ts";
import { manifestDigest } from "../../common/image-format/manifest-digest.ts";
import type { VersionRecord } from "../../common/image-format/version-record.ts";
import { ChunkStore, type ChunkStoreOptions, type ImageChunkLocation } from "./chunk-store.ts";
import { ChunkVerifier } from "./chunk-verifier.ts";
import { asStoreError, StoreError } from "./errors.ts";
import { type ImageFormat, inspectImageFile } from "./format-inspector.ts";
import { layoutOf, missingChunkRefs } from "./image-layout.ts";
import { checkManifestLimits, DEFAULT_MANIFEST_LIMITS, type ManifestLimits } from "./manifest-limits.ts";
import { type BaseImage, PartialImage } from "./partial-image.ts";
import { PartialImageWriter } from "./partial-image-writer.ts";

export type { ImageFormat, VersionRecord, VersionState } from "../../common/image-format/version-record.ts";

const IMAGE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const LOCAL_ID_PATTERN = /^img-[0-9a-f]{16}$/;

/** Image IDs become directory names: only a conservative alphabet, never "." or "..". */
export function isImageId(value: unknown): value is string {
  return typeof value === "string" && IMAGE_ID_PATTERN.test(value);
}

export function isVersion(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 1;
}

export function isLocalId(value: unknown): value is string {
  return typeof value === "string" && LOCAL_ID_PATTERN.test(value);
}

function checkIdentifiers(imageId: string, version: number): void {
  if (!isImageId(imageId))
    throw new StoreError("INVALID_IDENTIFIER", `image id ${JSON.stringify(imageId)} is not valid`);
  if (!isVersion(version))
    throw new StoreError("INVALID_IDENTIFIER", `version ${version} is not a positive integer`);
}

/** Digests stored but referenced by no manifest: what garbage collection removes. */
export function unreferencedDigests(stored: Iterable<string>, referenced: ReadonlySet<string>): Set<string> {
  const dead = new Set<string>();
  for (const digest of stored) if (!referenced.has(digest)) dead.add(digest);
  return dead;
}

async function writeFileAtomically(path: string, data: string | Buffer): Promise<void> {
  try {
    await replaceFileDurably(path, data);
  } catch (error) {
    throw asStoreError(error, path);
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/**
 * A version's record and manifest as written, or undefined for a pending record a crash
 * left without its own manifest (an available one is never rewritten, so it is trusted).
 */
async function readVersion(
  dir: string,
  version: string,
): Promise<{ record: VersionRecord; manifest: Manifest } | undefined> {
  const record = JSON.parse(await readFile(join(dir, `${version}.json`), "utf8")) as VersionRecord;
  if (record.state === "available") {
    return { record, manifest: decodeManifest(await readFile(join(dir, `${version}.manifest`))) };
  }
  try {
    const manifest = decodeManifest(await readFile(join(dir, `${version}.manifest`)));
    return manifest.digest === record.digest && manifest.size === record.size
      ? { record, manifest }
      : undefined;
  } catch {
    return undefined;
  }
}

function versionKey(imageId: string, version: number): string {
  return `${imageId}@${version}`;
}

export interface ImageStoreOptions extends ChunkStoreOptions {
  /** What a version's manifest may declare here (DEFAULT_MANIFEST_LIMITS for what is not set). */
  limits?: Partial<ManifestLimits>;
}

/**
 * The datacenter's image store: chunks (deduplicated across every image and version),
 * version manifests, and one assembled, verified image file per available version.
 *
 * Layout under the data directory:
 *   chunks/pack-N.pack, pack-N.idx        chunk data and its index (see chunk-store.ts)
 *   versions/<imageId>/<version>.manifest  binary manifest
 *   versions/<imageId>/<version>.json      VersionRecord
 *   versions/<imageId>/<version>.partial   image of a pending version, being written in place
 *   images/<localId>.img                   assembled image, sparse, read-only by convention
 *
 * Chunks, uploaded by a client or pulled from a peer, are written once, straight into the
 * partial image of their version (see partial-image.ts), which is renamed into images/ when
 * the version completes; an image then stores the chunks that no pack holds, and they move to
 * packs before the image is deleted if another version still needs them. A version updated in
 * place starts as a copy of its base version's unchanged chunks.
 */
export class ImageStore {
  readonly dataDir: string;
  readonly chunks: ChunkStore;
  readonly limits: ManifestLimits;
  private readonly versions = new Map<string, VersionRecord>();
  private readonly manifests = new Map<string, Manifest>();
  private readonly byLocalId = new Map<string, VersionRecord>();
  private readonly completing = new Map<string, Promise<VersionRecord>>();
  /** Partial images of pending versions, opened on first use. */
  private readonly partials = new Map<string, Promise<PartialImage>>();
  /** Open image files of available versions (they store chunks; see `addImageLocation`). */
  private readonly imageFiles = new Map<string, FileHandle>();
  /** Checks the chunks pulls receive off the receiving thread (see chunk-verifier.ts). */
  private readonly verifier = new ChunkVerifier();
  private collecting: Promise<unknown> | undefined;

  private constructor(dataDir: string, chunks: ChunkStore, limits: ManifestLimits) {
    this.dataDir = dataDir;
    this.chunks = chunks;
    this.limits = limits;
  }

  static async open(dataDir: string, options: ImageStoreOptions = {}): Promise<ImageStore> {
    await mkdir(join(dataDir, "versions"), { recursive: true });
    await mkdir(join(dataDir, "images"), { recursive: true });
    const limits = { ...DEFAULT_MANIFEST_LIMITS, ...options.limits };
    const store = new ImageStore(dataDir, await ChunkStore.open(join(dataDir, "chunks"), options), limits);
    await store.load();
    return store;
  }

  /**
   * Reads the records back and repairs what a crash (or a full disk) left between steps:
   * temporary files, a pending record whose manifest is not its own, an available record
   * whose image was not renamed into place yet (it is now), and image files no record names.
   */
  private async load(): Promise<void> {
    const imagesDir = join(this.dataDir, "images");
    // Whole-image uploads spooled when the manager stopped (see whole-upload.ts): never resumed.
    await rm(join(this.dataDir, "uploads"), { recursive: true, force: true });
    for (const imageId of await readdir(join(this.dataDir, "versions"))) {
      if (!isImageId(imageId)) continue;
      const dir = join(this.dataDir, "versions", imageId);
      const names = await readdir(dir);
      const recorded = new Set(
        names.filter((name) => name.endsWith(".json")).map((name) => name.slice(0, -5)),
      );
      for (const name of names) {
        const stem = name.slice(0, name.lastIndexOf("."));
        // Temporary files, and a manifest whose record was never written (or was deleted).
        if (name.endsWith(".tmp") || (name.endsWith(".manifest") && !recorded.has(stem))) {
          await rm(join(dir, name), { force: true });
          continue;
        }
        if (!name.endsWith(".json")) continue;
        const loaded = await readVersion(dir, stem);
        if (!loaded) {
          // Pending, with its manifest missing or another one's: its upload or pull begins again.
          await this.removeVersionFiles(imageId, stem);
          continue;
        }
        const { record, manifest } = loaded;
        if (record.state === "available" && record.localId) {
          const image = join(imagesDir, `${record.localId}.img`);
          if (!(await exists(image))) {
            const partial = this.partialPath(imageId, record.version);
            if (!(await exists(partial))) {
              await this.removeVersionFiles(imageId, stem);
              continue;
            }
            await rename(partial, image);
            await syncDirectory(imagesDir);
          }
        }
        this.remember(record, manifest);
      }
    }
    for (const name of await readdir(imagesDir)) {
      const orphan = name.endsWith(".tmp") || !this.byLocalId.has(name.replace(/\.img$/, ""));
      if (orphan) await rm(join(imagesDir, name), { force: true });
    }
    // Available images store the chunks no pack holds.
    for (const record of this.versions.values()) {
      if (record.state !== "available" || !record.localId) continue;
      const key = versionKey(record.imageId, record.version);
      const file = await open(join(imagesDir, `${record.localId}.img`), "r");
      this.imageFiles.set(key, file);
      this.addImageLocations(key, file, this.manifests.get(key) as Manifest);
    }
    // Then the partial images of pending versions, checked chunk by chunk (see partial-image.ts).
    for (const imageId of await readdir(join(this.dataDir, "versions"))) {
      if (!isImageId(imageId)) continue;
      const dir = join(this.dataDir, "versions", imageId);
      for (const name of await readdir(dir)) {
        if (!name.endsWith(".partial")) continue;
        const version = Number(name.slice(0, -".partial".length));
        const record = this.getVersion(imageId, version);
        if (record?.state === "pending") await this.partialImage(imageId, version);
        else await rm(join(dir, name), { force: true });
      }
    }
  }

  /** Deletes a version's record, manifest and partial image (not loaded yet, or forgotten). */
  private async removeVersionFiles(imageId: string, version: string): Promise<void> {
    const dir = join(this.dataDir, "versions", imageId);
    // The record first: without it, what is left is cleaned at the next open.
    await rm(join(dir, `${version}.json`), { force: true });
    for (const suffix of [".manifest", ".partial"]) await rm(join(dir, version + suffix), { force: true });
  }

  private addImageLocations(owner: string, file: FileHandle, manifest: Manifest): void {
    const { offsets } = layoutOf(manifest);
    for (const [i, chunk] of manifest.chunks.entries()) {
      if (chunk.zero) continue;
      this.chunks.addImageLocation(chunk.digest, {
        file,
        offset: offsets[i] as number,
        length: chunk.length,
        owner,
      });
    }
  }

  private partialPath(imageId: string, version: number): string {
    return join(this.dataDir, "versions", imageId, `${version}.partial`);
  }

  /** Keeps a partial image being opened, and forgets it if the open fails. */
  private trackPartial(key: string, opening: Promise<PartialImage>): void {
    opening.catch(() => {
      if (this.partials.get(key) === opening) this.partials.delete(key);
    });
    this.partials.set(key, opening);
  }

  /** The partial image of a pending version (opened, or created, on first use). */
  private partialImage(imageId: string, version: number): Promise<PartialImage> {
    const key = versionKey(imageId, version);
    let partial = this.partials.get(key);
    if (!partial) {
      const manifest = this.getManifest(imageId, version);
      if (!manifest || this.getVersion(imageId, version)?.state !== "pending") {
        return Promise.reject(
          new StoreError("VERSION_NOT_FOUND", `image ${imageId} version ${version} is not pending here`),
        );
      }
      partial = PartialImage.open(
        this.partialPath(imageId, version),
        manifest,
        key,
        this.chunks,
        this.baseImageOf(imageId, version),
        // A manifest the catalog vouched for: its verified chunks are the whole version.
        { hashWhole: this.getVersion(imageId, version)?.manifestVerified !== true, verifier: this.verifier },
      );
      this.trackPartial(key, partial);
    }
    return partial;
  }

  /** The newest other available version of the image, whose file a new version starts from. */
  private baseImageOf(imageId: string, version: number): BaseImage | undefined {
    let best: VersionRecord | undefined;
    for (const record of this.versions.values()) {
      if (record.imageId !== imageId || record.version === version || record.state !== "available") continue;
      if (!best || record.version > best.version) best = record;
    }
    if (!best) return undefined;
    const key = versionKey(imageId, best.version);
    const file = this.imageFiles.get(key);
    const manifest = this.manifests.get(key);
    return file && manifest && best.localId !== undefined
      ? { file, manifest, path: this.imagePath(best.localId) }
      : undefined;
  }

  /**
   * Opens a pending version's image now rather than at its first chunk: an update's copy of
   * the chunks it shares in place with the version before it (see PartialImage.open) then runs
   * while the chunks it lacks are still being asked for. Anything but a pending version is
   * left alone.
   */
  async startReceiving(imageId: string, version: number): Promise<void> {
    await this.collecting;
    if (this.getVersion(imageId, version)?.state !== "pending") return;
    this.verifier.warmUp();
    await this.partialImage(imageId, version);
  }

  /**
   * A writer for chunks of a pending version received from a peer: each is verified and
   * written once, in place, into the version's image (one writer per request).
   */
  async receiver(imageId: string, version: number): Promise<PartialImageWriter> {
    await this.collecting;
    return new PartialImageWriter(await this.partialImage(imageId, version));
  }

  /** Waits for the writes queued into a pending version's image; reports a failed one (DISK_FULL). */
  async drainWrites(imageId: string, version: number): Promise<void> {
    const partial = this.partials.get(versionKey(imageId, version));
    if (partial) await (await partial).drain();
  }

  /**
   * Deletes the partial image of a version, if any. Its chunks that another version needs
   * move to packs first (the partial may be where the store found them); the rest are forgotten.
   */
  private async discardPartial(imageId: string, version: number): Promise<void> {
    const key = versionKey(imageId, version);
    const partial = this.partials.get(key);
    if (partial) await this.keepChunksOf(key);
    this.partials.delete(key);
    if (partial) await (await partial.catch(() => undefined))?.discard();
    else await rm(this.partialPath(imageId, version), { force: true });
  }

  /**
   * Keeps the chunks stored only in `owner`'s image that another version references: where
   * another available version's image holds one too (complete and verified, it holds every
   * chunk of its manifest), that image stores it from now on; the rest move into packs.
   */
  private async keepChunksOf(owner: string): Promise<void> {
    const referenced = new Set<string>();
    for (const [key, manifest] of this.manifests) if (key !== owner) referencedDigests(manifest, referenced);
    const needed = new Set(this.chunks.digestsOnlyIn(owner).filter((digest) => referenced.has(digest)));
    const elsewhere = new Map<string, ImageChunkLocation>();
    for (const [key, file] of needed.size > 0 ? this.imageFiles : []) {
      const manifest = this.manifests.get(key);
      if (key === owner || !manifest) continue;
      const { offsets } = layoutOf(manifest);
      for (const [i, chunk] of manifest.chunks.entries()) {
        if (chunk.zero || !needed.has(chunk.digest) || elsewhere.has(chunk.digest)) continue;
        elsewhere.set(chunk.digest, { file, offset: offsets[i] as number, length: chunk.length, owner: key });
      }
    }
    await this.chunks.moveToPacks([...needed].filter((digest) => !elsewhere.has(digest)));
    this.chunks.dropImageLocations(owner);
    for (const [digest, location] of elsewhere) this.chunks.addImageLocation(digest, location);
  }

  private remember(record: VersionRecord, manifest: Manifest): void {
    const key = versionKey(record.imageId, record.version);
    this.versions.set(key, record);
    this.manifests.set(key, manifest);
    if (record.localId) this.byLocalId.set(record.localId, record);
  }

  getVersion(imageId: string, version: number): VersionRecord | undefined {
    return this.versions.get(versionKey(imageId, version));
  }

  getManifest(imageId: string, version: number): Manifest | undefined {
    return this.manifests.get(versionKey(imageId, version));
  }

  /**
   * A version's manifest in its binary form, as this store keeps it on disk: what a peer is
   * sent, read rather than encoded again (15-25 ms for 131,000 chunks, before the peer's first
   * request). The file is written once when the version begins and never changed.
   */
  async encodedManifest(imageId: string, version: number): Promise<Buffer> {
    const notFound = () =>
      new StoreError("VERSION_NOT_FOUND", `image ${imageId} version ${version} is not known here`);
    if (!this.getManifest(imageId, version)) throw notFound();
    try {
      return await readFile(join(this.dataDir, "versions", imageId, `${version}.manifest`));
    } catch (error) {
      // Deleted since it was looked up.
      if ((error as NodeJS.ErrnoException).code === "ENOENT") throw notFound();
      throw error;
    }
  }

  listVersions(): VersionRecord[] {
    return [...this.versions.values()];
  }

  findByLocalId(localId: string): VersionRecord | undefined {
    return this.byLocalId.get(localId);
  }

  /** The open image file of an available version, to read at offsets (chunk patches' bases). */
  versionFile(imageId: string, version: number): FileHandle | undefined {
    if (this.getVersion(imageId, version)?.state !== "available") return undefined;
    return this.imageFiles.get(versionKey(imageId, version));
  }

  /** The assembled image of an available version (format in its VersionRecord). */
  imagePath(localId: string): string {
    if (!isLocalId(localId) || !this.byLocalId.has(localId)) {
      throw new StoreError("VERSION_NOT_FOUND", `no available image has local id ${JSON.stringify(localId)}`);
    }
    return join(this.dataDir, "images", `${localId}.img`);
  }

  /**
   * Records the manifest of a version about to be received (validated, and checked against
   * what the control plane expects). Idempotent for the same manifest, so an interrupted
   * upload or pull simply begins again; a pending version may be replaced by another
   * manifest, an available one may not. A manifest over the store's limits is refused
   * before anything is written (its size would be truncated and hashed at commit).
   */
  async beginVersion(
    imageId: string,
    version: number,
    manifest: Manifest,
    options: ManifestExpectations & {
      format?: ImageFormat;
      project?: string;
      /** The catalog's manifest digest of the version: the manifest must have it. */
      manifestDigest?: string;
      /** The manifest's binary form, when it arrived so: kept as it is rather than encoded again. */
      encoded?: Buffer;
      /**
       * The manifest's digests were written as hex from 32 bytes (see validateManifest): it was
       * decoded from a binary manifest or delta, or cut here. Implied by `encoded`.
       */
      wellFormedDigests?: boolean;
    } = {},
  ): Promise<VersionRecord> {
    checkIdentifiers(imageId, version);
    checkManifestLimits(manifest, this.limits);
    validateManifest(manifest, options, {
      wellFormedDigests: options.wellFormedDigests === true || options.encoded !== undefined,
    });
    const digestOfManifest = manifestDigest(manifest);
    if (options.manifestDigest !== undefined && options.manifestDigest !== digestOfManifest) {
      throw new StoreError(
        "MANIFEST_DIGEST_MISMATCH",
        `the manifest of image ${imageId} version ${version} has digest ${digestOfManifest}, not the catalog's ${options.manifestDigest}`,
      );
    }
    await this.collecting;
    const existing = this.getVersion(imageId, version);
    if (existing) {
      if (existing.digest === manifest.digest && existing.size === manifest.size) {
        const known = this.getManifest(imageId, version) as Manifest;
        if (existing.state === "available" || sameChunks(known, manifest)) return existing;
      }
      if (existing.state === "available") {
        throw new StoreError(
          "VERSION_CONFLICT",
          `image ${imageId} version ${version} is already available with digest ${existing.digest}`,
        );
      }
    }
    // A partial image laid out for another manifest is of no use.
    if (existing) await this.discardPartial(imageId, version);
    const record: VersionRecord = {
      imageId,
      version,
      state: "pending",
      size: manifest.size,
      digest: manifest.digest,
      format: options.format ?? "raw",
      chunkCount: manifest.chunks.length,
      ...(options.project !== undefined ? { project: options.project } : {}),
      manifestDigest: digestOfManifest,
      ...(options.manifestDigest !== undefined ? { manifestVerified: true } : {}),
    };
    // Referenced in memory before any chunk of it is stored, so garbage collection keeps them.
    this.remember(record, manifest);
    const dir = join(this.dataDir, "versions", imageId);
    // A new directory's entry is durable once its parent is synced.
    if (await mkdir(dir, { recursive: true })) await syncDirectory(join(this.dataDir, "versions"));
    await writeFileAtomically(join(dir, `${version}.manifest`), options.encoded ?? encodeManifest(manifest));
    await writeFileAtomically(join(dir, `${version}.json`), JSON.stringify(record));
    return record;
  }

  /**
   * Makes a version available from an image file received whole and cut into `manifest` by
   * the caller, every chunk digest and the whole digest computed from the file's bytes (a
   * streamed upload, see whole-upload.ts): the file becomes the version's partial image
   * (renamed, never copied, not hashed again) and the version completes as any other. The file
   * must lie in this store's data directory. An available version with this manifest is
   * answered as it is (the file is deleted); what an earlier upload of the pending version
   * received is given up for the file.
   */
  async adoptVersion(
    imageId: string,
    version: number,
    manifest: Manifest,
    path: string,
    options: { format?: ImageFormat; project?: string } = {},
  ): Promise<VersionRecord> {
    const record = await this.beginVersion(imageId, version, manifest, {
      ...options,
      wellFormedDigests: true,
    });
    if (record.state === "available") {
      await rm(path, { force: true });
      return record;
    }
    await this.discardPartial(imageId, version);
    const key = versionKey(imageId, version);
    const partialPath = this.partialPath(imageId, version);
    try {
      await rename(path, partialPath);
    } catch (error) {
      throw asStoreError(error, partialPath);
    }
    this.trackPartial(
      key,
      PartialImage.open(partialPath, manifest, key, this.chunks, undefined, {
        hashWhole: false,
        received: true,
      }),
    );
    return this.completeVersion(imageId, version, options.project);
  }

  /** Distinct chunk digests of a version that are not stored yet (zero runs never are). */
  missingChunks(imageId: string, version: number): string[] {
    return this.missingChunkRefs(imageId, version).map((chunk) => chunk.digest);
  }

  /** The chunks of `missingChunks`, with their lengths (the manifest's own entries). */
  missingChunkRefs(imageId: string, version: number): ChunkRef[] {
    const manifest = this.getManifest(imageId, version);
    if (!manifest)
      throw new StoreError("VERSION_NOT_FOUND", `image ${imageId} version ${version} is not known here`);
    return missingChunkRefs(manifest, (digest) => this.chunks.has(digest));
  }

  /** Of `chunks` (some of a version's), those not stored here. */
  notStored(chunks: readonly ChunkRef[]): ChunkRef[] {
    return chunks.filter((chunk) => !this.chunks.has(chunk.digest));
  }

  /**
   * The chunks of a version an upload by `project` has to send: those neither in an available
   * version of that project here nor received into this version already. A chunk only
   * another project's images hold counts as missing: the answer would tell the uploader what
   * others store, and the commit would give it a chunk it never had. (Identical chunks are
   * still stored once: what is sent again lands in this version's image, not a second pack.)
   */
  async missingChunksOfUpload(imageId: string, version: number, project: string): Promise<string[]> {
    const manifest = this.getManifest(imageId, version);
    if (!manifest)
      throw new StoreError("VERSION_NOT_FOUND", `image ${imageId} version ${version} is not known here`);
    const present = await this.uploadHolds(imageId, version, project);
    return missingChunkRefs(manifest, present).map((chunk) => chunk.digest);
  }

  /**
   * Of `digests`, those an upload of `imageId` `version` by `project` would have to send (see
   * missingChunksOfUpload), before any manifest: what a client asks about a sample of its
   * image to choose between sending chunks and sending the image whole.
   */
  async missingOfProbe(
    imageId: string,
    version: number,
    project: string,
    digests: string[],
  ): Promise<string[]> {
    checkIdentifiers(imageId, version);
    const present = await this.uploadHolds(imageId, version, project);
    return digests.filter((digest) => !present(digest));
  }

  /** Whether a chunk is stored for an upload by `project`: see missingChunksOfUpload. */
  private async uploadHolds(
    imageId: string,
    version: number,
    project: string,
  ): Promise<(digest: string) => boolean> {
    const received = await this.partials.get(versionKey(imageId, version))?.catch(() => undefined);
    const owned = new Set<string>();
    for (const [key, record] of this.versions) {
      const held = this.manifests.get(key);
      if (record.state === "available" && record.project === project && held) referencedDigests(held, owned);
    }
    return (digest: string) =>
      (owned.has(digest) || received?.holds(digest) === true) && this.chunks.has(digest);
  }

  /**
   * Makes a pending version available: every chunk must be stored (for an upload by
   * `project`: sent, or held by that project; see missingChunksOfUpload); the image is
   * assembled (sparse), its whole digest checked, its content checked against its declared
   * format (see format-inspector.ts), and only then renamed into place and given its local
   * ID. Concurrent calls for one version share the work. A version whose content is refused
   * is forgotten (IMAGE_FORMAT_REFUSED): its bytes are final, it could never be accepted.
   */
  completeVersion(imageId: string, version: number, project?: string): Promise<VersionRecord> {
    const key = versionKey(imageId, version);
    let running = this.completing.get(key);
    if (!running) {
      running = this.assembleVersion(imageId, version, project).finally(() => this.completing.delete(key));
      this.completing.set(key, running);
    }
    return running;
  }

  private async assembleVersion(imageId: string, version: number, project?: string): Promise<VersionRecord> {
    const record = this.getVersion(imageId, version);
    const manifest = this.getManifest(imageId, version);
    if (!record || !manifest) {
      throw new StoreError("VERSION_NOT_FOUND", `image ${imageId} version ${version} is not known here`);
    }
    if (record.state === "available") return record;
    // An upload's chunks count only if its project may use them (see missingChunksOfUpload).
    // Otherwise the partial image checks that what it lacks is stored, over its unwritten
    // positions: looking up every chunk of the version here first took 30-50 ms at the end of
    // a 1 GiB pull.
    const missing = project === undefined ? [] : await this.missingChunksOfUpload(imageId, version, project);
    if (missing.length > 0) {
      throw new StoreError(
        "VERSION_INCOMPLETE",
        `${missing.length} chunks of ${imageId} version ${version} are missing`,
      );
    }
    await this.chunks.flush();
    const key = versionKey(imageId, version);
    const partial = await this.partialImage(imageId, version);
    let digest: string | undefined;
    try {
      digest = await partial.complete();
    } catch (error) {
      throw asStoreError(error, `image ${imageId} version ${version}`);
    }
    // Not hashed whole only when the manifest was verified against the catalog's digest.
    if (digest !== undefined && digest !== manifest.digest) {
      // Every chunk in it matched its digest, so the manifest itself is wrong: start over.
      await this.discardPartial(imageId, version);
      throw new StoreError(
        "IMAGE_DIGEST_MISMATCH",
        `assembled image ${imageId} version ${version} has digest ${digest}, expected ${manifest.digest}`,
      );
    }
    const inspection = await inspectImageFile(partial.file, record.format, record.size);
    if (!inspection.ok) {
      await this.forgetVersion(key, record);
      throw new StoreError(
        "IMAGE_FORMAT_REFUSED",
        `image ${imageId} version ${version} is refused: ${inspection.reason}`,
      );
    }
    const localId = `img-${randomBytes(8).toString("hex")}`;
    const path = join(this.dataDir, "images", `${localId}.img`);
    const available: VersionRecord = { ...record, state: "available", localId };
    // The record first: a crash before the rename leaves an available record over its
    // partial image, complete and fsynced, which the next open renames into place. The other
    // way round left an image no record named, under a record still pending.
    const recordPath = join(this.dataDir, "versions", imageId, `${version}.json`);
    await writeFileAtomically(recordPath, JSON.stringify(available));
    try {
      await rename(partial.path, path);
    } catch (error) {
      await writeFileAtomically(recordPath, JSON.stringify(record)).catch(() => {});
      throw asStoreError(error, path);
    }
    await syncDirectory(join(this.dataDir, "images"));
    this.remember(available, manifest);
    this.partials.delete(key);
    await partial.release();
    this.imageFiles.set(key, partial.file);
    return available;
  }

  /** Forgets a version and deletes its image file; its chunks go at the next collection. */
  async deleteVersion(imageId: string, version: number): Promise<void> {
    checkIdentifiers(imageId, version);
    const key = versionKey(imageId, version);
    const record = this.versions.get(key);
    if (!record) return;
    await this.completing.get(key)?.catch(() => {});
    await this.forgetVersion(key, record);
  }

  private async forgetVersion(key: string, record: VersionRecord): Promise<void> {
    const { imageId, version } = record;
    // Chunks that only this version's image holds and another version needs move to packs.
    await this.keepChunksOf(key);
    await this.discardPartial(imageId, version);
    await this.imageFiles.get(key)?.close();
    this.imageFiles.delete(key);
    const dir = join(this.dataDir, "versions", imageId);
    await rm(join(dir, `${version}.json`), { force: true });
    await rm(join(dir, `${version}.manifest`), { force: true });
    this.versions.delete(key);
    this.manifests.delete(key);
    if (record.localId) {
      this.byLocalId.delete(record.localId);
      await rm(join(this.dataDir, "images", `${record.localId}.img`), { force: true });
    }
  }

  /** Removes every chunk that no manifest (pending or available) references. */
  async collectGarbage(): Promise<{ chunksRemoved: number; bytesReclaimed: number }> {
    while (this.collecting) await this.collecting;
    const run = (async () => {
      const referenced = new Set<string>();
      for (const manifest of this.manifests.values()) referencedDigests(manifest, referenced);
      return this.chunks.remove(unreferencedDigests(this.chunks.digests(), referenced));
    })();
    this.collecting = run.finally(() => {
      this.collecting = undefined;
    });
    return run;
  }

  stats(): { chunkCount: number; chunkBytes: number; imageCount: number } {
    return {
      chunkCount: this.chunks.chunkCount,
      chunkBytes: this.chunks.storedBytes(),
      imageCount: this.byLocalId.size,
    };
  }

  async close(): Promise<void> {
    for (const partial of this.partials.values()) await (await partial.catch(() => undefined))?.close();
    this.partials.clear();
    for (const file of this.imageFiles.values()) await file.close().catch(() => {});
    this.imageFiles.clear();
    await this.chunks.close();
    await this.verifier.close();
  }
}

function sameChunks(a: Manifest, b: Manifest): boolean {
  if (a.chunks.length !== b.chunks.length) return false;
  return a.chunks.every(
    (chunk, i) => chunk.digest === b.chunks[i]?.digest && chunk.length === b.chunks[i]?.length,
  );
}
