import { setTimeout as sleep } from "node:timers/promises";
import { binaryRequest, readAll } from "../../common/binary-http.ts";
import { batchByBytes } from "../../common/image-format/chunk-records.ts";
import {
  type ChunkRef,
  decodeManifest,
  encodeDigestList,
  type Manifest,
} from "../../common/image-format/manifest.ts";
import type { TransferRecorder } from "../metrics.ts";
import { StoreError } from "../store/errors.ts";
import { layoutOf } from "../store/image-layout.ts";
import type { ImageFormat, ImageStore, VersionRecord } from "../store/image-store.ts";
import { applyManifestDelta } from "../store/manifest-delta.ts";
import type { ChunkArrived } from "../store/partial-image-writer.ts";
import { streamChunkData } from "./chunk-stream.ts";
import { fetchPatches } from "./fetch-patches.ts";
import { chunkArrived, notArrived, versionHoldings } from "./progress.ts";
import { availableReport, type ReplicaReporter } from "./reporter.ts";

/** A manager holding the version, and a `read` token for it signed by the control plane. */
export interface PullSource {
  url: string;
  token: string;
  /** The source's datacenter, for metrics (the control plane names it with the source). */
  datacenter?: string;
}

/**
 * A pull's progress, of the whole version (see progress.ts): `bytesDone` of `bytesTotal` (the
 * image's size) are held, counting zero runs and chunks the store had before the pull began
 * (an earlier, interrupted pull; other versions or images sharing them), so a resumed pull
 * starts where the last one stopped and ends at `bytesTotal`/`bytesTotal`. What crossed the
 * network for this pull is `bytesReceived` (chunk data) and `wireBytes` (everything).
 */
export interface PullProgress {
  /** Bytes of the version held: never more than `bytesTotal`. */
  bytesDone: number;
  /** The version's size. */
  bytesTotal: number;
  /** Chunk entries of the version held, of `chunksTotal` in its manifest. */
  chunksDone: number;
  chunksTotal: number;
  /**
   * Chunk data this pull received and stored (each distinct chunk once, however often the
   * version uses it); for a chunk sent as a patch against a version held here, the patch.
   */
  bytesReceived: number;
  /** `bytesReceived` per second since the chunks began to arrive. */
  bytesPerSecond: number;
  /** HTTP body bytes both ways (manifest, digest lists, chunk records), for comparisons. */
  wireBytes: number;
  /** Set at the end: seconds receiving chunks, then completing (filling, fsync, digest check). */
  secondsTransferring?: number;
  secondsCompleting?: number;
}

export interface PullOptions {
  store: ImageStore;
  imageId: string;
  version: number;
  expectedDigest: string;
  expectedSize: number;
  /**
   * The catalog's manifest digest of the version, when it has one: the manifest a source sends
   * must have it, and the version is then verified whole by its verified chunks (no second pass).
   */
  expectedManifestDigest?: string;
  /** The image's project (from the control plane), recorded so its uploads here may reuse the version. */
  project?: string;
  sources: PullSource[];
  onProgress?: (progress: PullProgress) => void;
  reporter?: ReplicaReporter;
  signal?: AbortSignal;
  /** Passes over the sources before giving up; each pass asks only for what is still missing. */
  attempts?: number;
  /** Bytes of chunk data per request. */
  batchBytes?: number;
  /** Bytes of chunk data per request for patches (smaller: the base's bytes are read for each). */
  patchBatchBytes?: number;
  /** Requests in flight at once (pipelining: the next batch streams while one is verified). */
  concurrency?: number;
  /** Least time between two `transferring` reports to the control plane. */
  reportIntervalMs?: number;
  /** Counts bytes and chunks received, skipped and refused (regional-manager/metrics.ts). */
  recorder?: TransferRecorder;
  /** This manager's datacenter, told to the source for its metrics. */
  datacenter?: string;
}

export class PullError extends Error {
  readonly code = "PULL_FAILED";
}

const DEFAULT_BATCH_BYTES = 32 << 20;
const DEFAULT_PATCH_BATCH_BYTES = 8 << 20;
const DEFAULT_CONCURRENCY = 2;
const REPORT_INTERVAL_MS = 1000;

function versionUrl(source: PullSource, imageId: string, version: number, leaf: string): string {
  const base = source.url.replace(/\/+$/, "");
  return `${base}/v1/transfer/${encodeURIComponent(imageId)}/versions/${version}/${leaf}`;
}

/**
 * The newest version of the image this store holds, whose manifest the source may use as
 * the base of a manifest delta (the stale index the new version is compared against).
 */
export function baseVersionFor(store: ImageStore, imageId: string, version: number): number | undefined {
  let best: number | undefined;
  for (const record of store.listVersions()) {
    if (record.imageId !== imageId || record.state !== "available" || record.version === version) continue;
    if (best === undefined || record.version > best) best = record.version;
  }
  return best;
}

async function fetchManifest(
  store: ImageStore,
  source: PullSource,
  imageId: string,
  version: number,
  signal: AbortSignal | undefined,
): Promise<{ manifest: Manifest; format: ImageFormat; bytes: number; encoded?: Buffer; deltaBase?: number }> {
  const base = baseVersionFor(store, imageId, version);
  const query = base === undefined ? "" : `?base=${base}`;
  const response = await binaryRequest({
    method: "GET",
    url: versionUrl(source, imageId, version, "manifest") + query,
    headers: { authorization: `Bearer ${source.token}` },
    signal,
  });
  const format = (response.headers["x-image-format"] ?? "raw") as ImageFormat;
  const body = await readAll(response);
  const deltaBase = Number(response.headers["x-manifest-base"]);
  const baseManifest = deltaBase === base ? store.getManifest(imageId, deltaBase) : undefined;
  if (response.headers["x-manifest-base"] !== undefined && !baseManifest) {
    throw new PullError(`the source sent a manifest delta from version ${deltaBase}, which is not held here`);
  }
  if (!baseManifest) return { manifest: decodeManifest(body), format, bytes: body.length, encoded: body };
  return { manifest: applyManifestDelta(baseManifest, body), format, bytes: body.length, deltaBase };
}

/** Streams `digests` from one source into the store, verifying each chunk as it arrives. */
export async function fetchChunks(
  store: ImageStore,
  source: PullSource,
  imageId: string,
  version: number,
  digests: readonly string[],
  events: { onChunk: ChunkArrived; onWire: (bytes: number) => void },
  signal: AbortSignal | undefined,
  puller?: string,
): Promise<void> {
  const body = encodeDigestList(digests);
  events.onWire(body.length);
  // Chunks go straight into the version's image, each verified before it is written, on the
  // store's verifier thread (see partial-image-writer.ts).
  const writer = await store.receiver(imageId, version);
  // The sequence takes the chunks in the order asked for.
  const sequence = writer.sequence(digests, events.onChunk, { checkLater: true });
  try {
    await streamChunkData(
      {
        url:
          versionUrl(source, imageId, version, "chunks") +
          (puller === undefined ? "" : `?peer=${encodeURIComponent(puller)}`),
        token: source.token,
        body,
        expectedBytes: sequence.totalBytes,
        signal,
      },
      {
        region: () => sequence.region(),
        advance: (bytes) => sequence.advance(bytes),
        backpressure: () => writer.backpressure(),
        wire: events.onWire,
      },
    );
  } finally {
    // What was verified is kept even when the request fails. The writes are not waited for:
    // the next request streams while they finish (the pull waits before it counts what is missing).
    writer.release();
    // Chunks still being checked are reported (onChunk, so progress) as they pass. Waiting for
    // them here, even when the request failed, means nothing of it is reported after it ends.
    await writer.checked().catch(() => undefined);
  }
  // A corrupt chunk fails this request, as when it is checked on arrival.
  await writer.checked();
  if (!sequence.done) {
    throw new PullError(`the source ended the stream before the last of ${digests.length} chunks`);
  }
}

/**
 * Makes `imageId`/`version` available in `store`, pulling only the chunks it lacks from
 * the sources. Resumable: chunks stored by an earlier, interrupted pull are not fetched
 * again. One pull per version at a time is the caller's to ensure (replicas/pulls.ts).
 */
export async function pullImageVersion(options: PullOptions): Promise<VersionRecord> {
  const { store, imageId, version, sources, signal, reporter } = options;
  const held = store.getVersion(imageId, version);
  if (held?.state === "available" && held.digest === options.expectedDigest) return held;
  if (sources.length === 0) throw new PullError(`no source holds ${imageId} version ${version}`);
  const attempts = options.attempts ?? 3;
  const errors: unknown[] = [];
  try {
    let wireBytes = 0;
    let begun: Manifest | undefined;
    /** The source that sent the manifest as a delta from a version held here, and that version. */
    let deltaFrom: { source: PullSource; base: number } | undefined;
    for (let attempt = 0; ; attempt++) {
      const source = sources[attempt % sources.length] as PullSource;
      try {
        const fetched = await fetchManifest(store, source, imageId, version, signal);
        // Validated there, against what the control plane expects.
        await store.beginVersion(imageId, version, fetched.manifest, {
          format: fetched.format,
          size: options.expectedSize,
          digest: options.expectedDigest,
          ...(options.project !== undefined ? { project: options.project } : {}),
          ...(options.expectedManifestDigest !== undefined
            ? { manifestDigest: options.expectedManifestDigest }
            : {}),
          ...(fetched.encoded ? { encoded: fetched.encoded } : {}),
          // Decoded from binary: a whole manifest, or a delta over one held here.
          wellFormedDigests: true,
        });
        wireBytes = fetched.bytes;
        begun = fetched.manifest;
        if (fetched.deltaBase !== undefined) deltaFrom = { source, base: fetched.deltaBase };
        break;
      } catch (error) {
        errors.push(error);
        if (signal?.aborted || attempt + 1 >= attempts * sources.length) throw error;
      }
    }
    const manifest = store.getManifest(imageId, version) ?? (begun as Manifest);
    // The version's image is opened before what is missing is counted: a copy from a version
    // held here starts with it, and its reads and writes overlap the counting.
    await store.startReceiving(imageId, version);
    const initial = store.missingChunkRefs(imageId, version);
    // Distinct chunks the store had before this pull began: what it did not move.
    const distinct = layoutOf(manifest).positions.size;
    options.recorder?.chunks("pull", "skipped", Math.max(0, distinct - initial.length));
    let holdings = versionHoldings(manifest, initial);
    const progress: PullProgress = {
      bytesDone: holdings.bytesHeld,
      bytesTotal: holdings.bytesTotal,
      chunksDone: holdings.chunksHeld,
      chunksTotal: holdings.chunksTotal,
      bytesReceived: 0,
      bytesPerSecond: 0,
      wireBytes,
    };
    const onWire = (bytes: number) => {
      progress.wireBytes += bytes;
    };
    const reportInterval = options.reportIntervalMs ?? REPORT_INTERVAL_MS;
    let lastReport = Number.NEGATIVE_INFINITY;
    const report = (now: number) => {
      lastReport = now;
      reporter
        ?.reportReplica({
          imageId,
          version,
          state: "transferring",
          bytesDone: progress.bytesDone,
          bytesTotal: progress.bytesTotal,
          bytesReceived: progress.bytesReceived,
        })
        .catch(() => {});
    };
    /** What the store holds at the start of each attempt: a resumed pull starts from there. */
    const recount = (missing: readonly ChunkRef[]) => {
      if (missing !== initial) holdings = versionHoldings(manifest, missing);
      progress.bytesDone = holdings.bytesHeld;
      progress.chunksDone = holdings.chunksHeld;
      options.onProgress?.(progress);
      if (missing.length > 0) report(performance.now());
    };
    const started = performance.now();
    const onChunk = (digest: string, length: number, position?: number) => {
      chunkArrived(holdings, digest, position);
      progress.bytesDone = holdings.bytesHeld;
      progress.chunksDone = holdings.chunksHeld;
      progress.bytesReceived += length;
      const now = performance.now();
      progress.bytesPerSecond = progress.bytesReceived / Math.max((now - started) / 1000, 1e-3);
      options.onProgress?.(progress);
      if (now - lastReport >= reportInterval) report(now);
    };
    /** Counts a chunk from `source`: `length` bytes of it crossed the network. */
    const countedFrom = (source: PullSource) => {
      const recorder = options.recorder;
      if (!recorder) return onChunk;
      const peer = source.datacenter ?? "unknown";
      return (digest: string, length: number, position?: number) => {
        onChunk(digest, length, position);
        recorder.bytesIn(peer, length);
        recorder.chunks("pull", "received", 1);
      };
    };
    const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
    // What changed since a version held here travels as patches against it (see fetch-patches.ts);
    // whatever they do not bring is fetched whole below.
    const basePatched = deltaFrom !== undefined && initial.length > 0 ? deltaFrom : undefined;
    const baseFile = basePatched && store.versionFile(imageId, basePatched.base);
    if (basePatched && baseFile) {
      const { source, base } = basePatched;
      const peer = options.datacenter === undefined ? "" : `&peer=${encodeURIComponent(options.datacenter)}`;
      try {
        const batches = batchByBytes(initial, options.patchBatchBytes ?? DEFAULT_PATCH_BATCH_BYTES, (c) => c);
        const { offsets, positions } = layoutOf(manifest);
        const placeOf = (chunk: ChunkRef) => ({
          offset: offsets[(positions.get(chunk.digest) as number[])[0] as number] as number,
          length: chunk.length,
        });
        await runPool(batches, concurrency, async (batch) => {
          const mismatched = await fetchPatches(
            store,
            imageId,
            version,
            {
              url: `${versionUrl(source, imageId, version, "patches")}?base=${base}${peer}`,
              token: source.token,
              base: baseFile,
              digests: batch.map((chunk) => chunk.digest),
              places: batch.map(placeOf),
              signal,
            },
            { onChunk: countedFrom(source), onWire },
          );
          if (mismatched > 0) options.recorder?.verificationFailed("pull");
        });
      } catch (error) {
        errors.push(error);
        if (signal?.aborted || (error instanceof StoreError && error.code === "DISK_FULL")) throw error;
      }
    }
    for (let attempt = 0; ; attempt++) {
      // Chunks count as stored once written: earlier writes (patches, an attempt's) are waited for first.
      const fresh = attempt === 0 && !baseFile;
      if (!fresh) await store.drainWrites(imageId, version);
      // Chunks are only ever added to a pending version: what was held before an attempt still
      // is, and of what was missing, what arrived is stored (its writes are done). Another pull
      // may have stored some of the rest meanwhile.
      const missing = fresh ? initial : store.notStored(notArrived(holdings));
      recount(missing);
      if (missing.length === 0) break;
      if (attempt >= attempts * sources.length) {
        const last = errors.at(-1);
        throw new PullError(
          `${missing.length} chunks still missing after ${attempt} attempts; last error: ${last instanceof Error ? last.message : String(last)}`,
          { cause: last },
        );
      }
      const source = sources[attempt % sources.length] as PullSource;
      // After a full pass over the sources fails, give a restarting source a moment.
      if (attempt > 0 && attempt % sources.length === 0) {
        await sleep(Math.min(2000, 250 * 2 ** (attempt / sources.length - 1)), undefined, { signal });
      }
      try {
        const batches = batchByBytes(
          missing,
          options.batchBytes ?? DEFAULT_BATCH_BYTES,
          (chunk) => chunk,
        ).map((batch) => batch.map((chunk) => chunk.digest));
        const counted = countedFrom(source);
        await runPool(batches, concurrency, (batch) =>
          fetchChunks(
            store,
            source,
            imageId,
            version,
            batch,
            { onChunk: counted, onWire },
            signal,
            options.datacenter,
          ),
        );
      } catch (error) {
        errors.push(error);
        if (error instanceof StoreError && error.code === "CHUNK_DIGEST_MISMATCH")
          options.recorder?.verificationFailed("pull");
        // A local fault is not cured by asking another source.
        if (signal?.aborted || (error instanceof StoreError && error.code === "DISK_FULL")) throw error;
      }
    }
    const transferred = performance.now();
    const record = await store.completeVersion(imageId, version);
    progress.secondsTransferring = (transferred - started) / 1000;
    progress.secondsCompleting = (performance.now() - transferred) / 1000;
    options.onProgress?.(progress);
    await reporter?.reportReplica(
      availableReport(record, {
        bytesDone: progress.bytesDone,
        bytesTotal: progress.bytesTotal,
        bytesReceived: progress.bytesReceived,
      }),
    );
    return record;
  } catch (error) {
    await reporter
      ?.reportReplica({
        imageId,
        version,
        state: "failed",
        error: error instanceof Error ? error.message : String(error),
      })
      .catch(() => {});
    throw error;
  }
}

/** Runs `task` over `items` with at most `concurrency` at once; the first failure stops new tasks. */
export async function runPool<T>(
  items: readonly T[],
  concurrency: number,
  task: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const item = items[next++] as T;
      try {
        await task(item);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  const results = await Promise.allSettled(
    Array.from({ length: Math.min(concurrency, items.length) }, worker),
  );
  const failure = results.find((result) => result.status === "rejected");
  if (failure) throw (failure as PromiseRejectedResult).reason;
}
