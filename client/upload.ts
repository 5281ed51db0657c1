import { type FileHandle, open, stat } from "node:fs/promises";
import { binaryRequest, CONNECTION_BODY_UPGRADE, readAll, TransferHttpError } from "../common/binary-http.ts";
import { readFully } from "../common/files.ts";
import { chunkFile } from "../common/image-format/chunk-file.ts";
import {
  batchByBytes,
  RECORD_HEADER_BYTES,
  writeRecordHeader,
} from "../common/image-format/chunk-records.ts";
import { chunkWindow, DEFAULT_CHUNKING, masksFor, ZERO_BLOCK } from "../common/image-format/chunking.ts";
import { sha256Hex } from "../common/image-format/digest.ts";
import {
  type ChunkRef,
  decodeDigestList,
  encodeDigestList,
  encodeManifest,
  type Manifest,
} from "../common/image-format/manifest.ts";
import type { ImageFormat, VersionRecord } from "../common/image-format/version-record.ts";

export interface UploadProgress {
  phase: "chunking" | "sending" | "committing";
  /** In the chunking phase: bytes of the file read; afterwards: bytes of chunk data sent. */
  bytesDone: number;
  bytesTotal: number;
  bytesPerSecond: number;
  /** Chunks the manager already held (or zero runs): not sent. */
  chunksSkipped: number;
}

export interface UploadOptions {
  /** Local image file. */
  path: string;
  /** Base URL of the origin manager (from the control plane's answer to POST /v1/images). */
  managerUrl: string;
  /** `upload` transfer token for this image version and datacenter. */
  token: string;
  imageId: string;
  version: number;
  format?: ImageFormat;
  onProgress?: (progress: UploadProgress) => void;
  signal?: AbortSignal;
  /** Requests in flight at once. */
  concurrency?: number;
  /** Bytes of chunk data per request. */
  batchBytes?: number;
  /** Retries of one failed request before the upload fails (a later call resumes anyway). */
  retries?: number;
  /** A manifest computed earlier for this file (skips chunking; the upload sends chunks). */
  manifest?: Manifest;
  /**
   * How the bytes go: `chunks` cuts and hashes the file here and sends only the chunks the
   * manager lacks (resumable, and what an update of an image wants); `whole` sends the file
   * as it is and the manager cuts it (a first upload: nothing to skip, and half the work);
   * `auto` (the default) asks the manager about a sample of the file and sends it whole when
   * it holds less than a tenth of it.
   */
  method?: "auto" | "chunks" | "whole";
}

export interface UploadResult {
  record: VersionRecord;
  /** How the file was sent (see UploadOptions.method). */
  method: "chunks" | "whole";
  /** Chunks of the version (all of them when sent whole). */
  chunksSent: number;
  bytesSent: number;
  chunksSkipped: number;
}

/** The manager refused the image's content at commit: uploading it again cannot succeed. */
export function isImageRefused(error: unknown): boolean {
  return error instanceof TransferHttpError && error.code === "image_format_refused";
}

const DEFAULT_BATCH_BYTES = 16 << 20;
const DEFAULT_CONCURRENCY = 4;

interface Placed {
  chunk: ChunkRef;
  offset: number;
}

/**
 * Uploads an image version, the way `options.method` says (by default, after asking the
 * manager about a sample of the file). As chunks: chunks the file, sends the manifest, sends
 * only the chunks the manager lacks (in parallel batches), then commits; interrupted, it can
 * simply be called again: the manager answers with what is still missing, so stored chunks
 * are not resent, and an unchanged file sends no chunk bytes at all. Whole: one request with
 * the file as it is, which the manager cuts, hashes and commits; interrupted, it starts over.
 */
export async function uploadImage(options: UploadOptions): Promise<UploadResult> {
  const base = `${options.managerUrl.replace(/\/+$/, "")}/v1/uploads/${encodeURIComponent(options.imageId)}/versions/${options.version}`;
  const headers = { authorization: `Bearer ${options.token}` };
  const method = options.manifest ? "chunks" : (options.method ?? "auto");
  if (method === "whole" || (method === "auto" && (await managerHoldsLittle(options, base, headers)))) {
    return uploadWhole(options, base, headers);
  }
  return uploadChunks(options, base, headers);
}

/** Files smaller than this are always sent as chunks: the choice would not be worth a probe. */
const WHOLE_UPLOAD_MIN_BYTES = 32 << 20;
const PROBE_WINDOWS = 16;
const PROBE_WINDOW_BYTES = 1 << 20;
/*
 * The first chunks cut from a window that starts anywhere in the file need not be the file's
 * own (its chunks start where the previous one ended); after a few cuts content-defined
 * boundaries agree again.
 */
const PROBE_SKIPPED_CUTS = 2;
/** The share of the sampled chunks the manager must hold for the upload to send chunks. */
const PROBE_HELD_FOR_CHUNKS = 0.1;

/**
 * Whether the manager holds less than a tenth of the file, judged from the chunks of
 * PROBE_WINDOWS windows spread over it (a few MiB read and hashed, whatever the file's size).
 */
async function managerHoldsLittle(
  options: UploadOptions,
  base: string,
  headers: Record<string, string>,
): Promise<boolean> {
  const size = (await stat(options.path)).size;
  if (size < WHOLE_UPLOAD_MIN_BYTES) return false;
  const digests = await sampleDigests(options.path, size);
  if (digests.length === 0) return true; // zeros throughout: nothing to skip
  const answer = await binaryRequest({
    method: "POST",
    url: `${base}/probe`,
    headers,
    body: encodeDigestList(digests),
    signal: options.signal,
  }).catch((error: unknown) => {
    // A manager from before probes: chunks, as every upload went then.
    if (error instanceof TransferHttpError && error.status === 404) return undefined;
    throw error;
  });
  if (!answer) return false;
  const missing = decodeDigestList(await readAll(answer)).length;
  return digests.length - missing < digests.length * PROBE_HELD_FOR_CHUNKS;
}

/** Digests of the data chunks cut from windows spread over the file (see PROBE_SKIPPED_CUTS). */
async function sampleDigests(path: string, size: number): Promise<string[]> {
  const file = await open(path, "r");
  try {
    const window = Buffer.allocUnsafe(PROBE_WINDOW_BYTES);
    const masks = masksFor(DEFAULT_CHUNKING);
    const digests: string[] = [];
    for (let w = 0; w < PROBE_WINDOWS; w++) {
      // Aligned like zero runs are, so that the window cuts them as the file's chunking does.
      const offset = Math.floor(((size - window.length) * w) / (PROBE_WINDOWS - 1) / ZERO_BLOCK) * ZERO_BLOCK;
      const read = await readFully(file, window, window.length, offset);
      let cuts = 0;
      chunkWindow(window, 0, read, false, offset, DEFAULT_CHUNKING, masks, (cut) => {
        if (cuts++ >= PROBE_SKIPPED_CUTS && !cut.zero)
          digests.push(sha256Hex(window.subarray(cut.start, cut.end)));
      });
    }
    return digests;
  } finally {
    await file.close();
  }
}

/** Sends the file as it is, in one request; the manager cuts, hashes and commits it. */
async function uploadWhole(
  options: UploadOptions,
  base: string,
  headers: Record<string, string>,
): Promise<UploadResult> {
  const size = (await stat(options.path)).size;
  const start = performance.now();
  let bytesDone = 0;
  const report = (phase: UploadProgress["phase"]) =>
    options.onProgress?.({
      phase,
      bytesDone,
      bytesTotal: size,
      bytesPerSecond: bytesDone / Math.max((performance.now() - start) / 1000, 1e-3),
      chunksSkipped: 0,
    });
  const query = options.format ? `?format=${options.format}` : "";
  const onSent = (bytes: number) => {
    bytesDone = bytes;
    report(bytesDone < size ? "sending" : "committing");
  };
  report("sending");
  const record = await withRetries(options.retries ?? 3, options.signal, async () => {
    const answer = await binaryRequest({
      method: "PUT",
      url: `${base}/image${query}`,
      headers: { ...headers, connection: "upgrade", upgrade: CONNECTION_BODY_UPGRADE },
      body: { path: options.path, length: size, onSent },
      signal: options.signal,
    });
    return JSON.parse((await readAll(answer)).toString("utf8")) as VersionRecord;
  });
  return { record, method: "whole", chunksSent: record.chunkCount, bytesSent: size, chunksSkipped: 0 };
}

/** Chunks the file here and sends only the chunks the manager lacks. */
async function uploadChunks(
  options: UploadOptions,
  base: string,
  headers: Record<string, string>,
): Promise<UploadResult> {
  const { signal } = options;
  const chunkStart = performance.now();
  const manifest =
    options.manifest ??
    (await chunkFile(options.path, {
      signal,
      onProgress: (bytesDone, bytesTotal) =>
        options.onProgress?.({
          phase: "chunking",
          bytesDone,
          bytesTotal,
          bytesPerSecond: bytesDone / Math.max((performance.now() - chunkStart) / 1000, 1e-3),
          chunksSkipped: 0,
        }),
    }));

  const query = options.format ? `?format=${options.format}` : "";
  const answer = await binaryRequest({
    method: "PUT",
    url: `${base}/manifest${query}`,
    headers,
    body: encodeManifest(manifest),
    signal,
  });
  const missing = new Set(decodeDigestList(await readAll(answer)));

  // The first occurrence of each missing chunk, in file order.
  const toSend: Placed[] = [];
  let offset = 0;
  for (const chunk of manifest.chunks) {
    if (missing.delete(chunk.digest)) toSend.push({ chunk, offset });
    offset += chunk.length;
  }
  const chunksSkipped = manifest.chunks.length - toSend.length;
  const bytesTotal = toSend.reduce((sum, placed) => sum + placed.chunk.length, 0);
  let bytesDone = 0;
  const sendStart = performance.now();
  const report = (phase: UploadProgress["phase"]) =>
    options.onProgress?.({
      phase,
      bytesDone,
      bytesTotal,
      bytesPerSecond: bytesDone / Math.max((performance.now() - sendStart) / 1000, 1e-3),
      chunksSkipped,
    });
  report("sending");

  const batches = batchByBytes(toSend, options.batchBytes ?? DEFAULT_BATCH_BYTES, (placed) => placed.chunk);
  const file = await open(options.path, "r");
  try {
    let next = 0;
    const largest = Math.max(0, ...batches.map(bodyBytes));
    const worker = async () => {
      // One body buffer per worker, reused for every batch it sends.
      const buffer = Buffer.allocUnsafeSlow(largest);
      while (next < batches.length) {
        const batch = batches[next++] as Placed[];
        const body = await readBatch(file, batch, buffer);
        await withRetries(options.retries ?? 3, signal, async () => {
          const response = await binaryRequest({
            method: "POST",
            url: `${base}/chunks`,
            headers,
            body,
            signal,
          });
          await readAll(response);
        });
        for (const placed of batch) bytesDone += placed.chunk.length;
        report("sending");
      }
    };
    await Promise.all(
      Array.from({ length: Math.min(options.concurrency ?? DEFAULT_CONCURRENCY, batches.length) }, worker),
    );
  } finally {
    await file.close();
  }

  report("committing");
  const committed = await binaryRequest({ method: "POST", url: `${base}/commit`, headers, signal });
  const record = JSON.parse((await readAll(committed)).toString("utf8")) as VersionRecord;
  return { record, method: "chunks", chunksSent: toSend.length, bytesSent: bytesTotal, chunksSkipped };
}

/** Chunk data views passed to one readv (the kernel takes at most IOV_MAX = 1024). */
const READV_VIEWS = 512;

/** Bytes of the request body that carries `batch`. */
function bodyBytes(batch: readonly Placed[]): number {
  let size = 0;
  for (const placed of batch) size += RECORD_HEADER_BYTES + placed.chunk.length;
  return size;
}

/**
 * Builds the request body of `batch`'s chunk records at the start of `buffer` (large enough,
 * see bodyBytes). The data of chunks adjacent in the file (the usual case) is read with one
 * readv straight behind their headers: no copy, and no fresh buffer per batch (fresh large
 * buffers are external memory, and V8 answered a 16 MiB one per batch with a full collection).
 */
async function readBatch(file: FileHandle, batch: readonly Placed[], buffer: Buffer): Promise<Buffer> {
  let at = 0;
  let i = 0;
  while (i < batch.length) {
    const first = batch[i] as Placed;
    const views: Buffer[] = [];
    let runBytes = 0;
    for (; i < batch.length && views.length < READV_VIEWS; i++) {
      const placed = batch[i] as Placed;
      if (placed.offset !== first.offset + runBytes) break;
      at = writeRecordHeader(buffer, at, placed.chunk.digest, placed.chunk.length);
      views.push(buffer.subarray(at, at + placed.chunk.length));
      at += placed.chunk.length;
      runBytes += placed.chunk.length;
    }
    await readViews(file, views, first.offset);
  }
  return buffer.subarray(0, at);
}

/** Fills `views` with the file's bytes from `position` on, however many reads it takes. */
async function readViews(file: FileHandle, views: readonly Buffer[], position: number): Promise<void> {
  let read = (await file.readv(views, position)).bytesRead;
  // A short read (rare on a regular file): the rest one view at a time.
  let viewStart = 0;
  for (const view of views) {
    const from = read - viewStart;
    if (from < view.length) {
      const rest = view.length - Math.max(0, from);
      const got = await readFully(
        file,
        view.subarray(view.length - rest),
        rest,
        position + viewStart + view.length - rest,
      );
      if (got < rest)
        throw new Error(`${position + read + got}: the file is shorter than when it was chunked`);
      read = viewStart + view.length;
    }
    viewStart += view.length;
  }
}

async function withRetries<T>(
  retries: number,
  signal: AbortSignal | undefined,
  task: () => Promise<T>,
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await task();
    } catch (error) {
      // Client errors (bad token, rejected chunk) will not improve by retrying.
      const permanent = error instanceof TransferHttpError && error.status < 500;
      if (permanent || signal?.aborted || attempt >= retries) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200 * 2 ** attempt));
    }
  }
}
