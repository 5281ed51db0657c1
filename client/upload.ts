import { type FileHandle, open } from "node:fs/promises";
import { binaryRequest, readAll, TransferHttpError } from "../common/binary-http.ts";
import { readFully } from "../common/files.ts";
import { chunkFile } from "../common/image-format/chunk-file.ts";
import {
  batchByBytes,
  RECORD_HEADER_BYTES,
  writeRecordHeader,
} from "../common/image-format/chunk-records.ts";
import {
  type ChunkRef,
  decodeDigestList,
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
  /** A manifest computed earlier for this file (skips chunking). */
  manifest?: Manifest;
}

export interface UploadResult {
  record: VersionRecord;
  manifest: Manifest;
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
 * Uploads an image version: chunks the file, sends the manifest, sends only the chunks the
 * manager lacks (in parallel batches), then commits. Interrupted, it can simply be called
 * again: the manager answers with what is still missing, so stored chunks are not resent,
 * and an unchanged file sends no chunk bytes at all.
 */
export async function uploadImage(options: UploadOptions): Promise<UploadResult> {
  const { signal } = options;
  const base = `${options.managerUrl.replace(/\/+$/, "")}/v1/uploads/${encodeURIComponent(options.imageId)}/versions/${options.version}`;
  const headers = { authorization: `Bearer ${options.token}` };
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
  return { record, manifest, chunksSent: toSend.length, bytesSent: bytesTotal, chunksSkipped };
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

async function withRetries(
  retries: number,
  signal: AbortSignal | undefined,
  task: () => Promise<void>,
): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await task();
      return;
    } catch (error) {
      // Client errors (bad token, rejected chunk) will not improve by retrying.
      const permanent = error instanceof TransferHttpError && error.status < 500;
      if (permanent || signal?.aborted || attempt >= retries) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200 * 2 ** attempt));
    }
  }
}
