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
    const worker = async () => {
      while (next < batches.length) {
        const batch = batches[next++] as Placed[];
        const body = await readBatch(file, batch);
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

/**
 * Builds one request body of chunk records. Chunks adjacent in the file (the usual case)
 * are read with one read and copied behind their headers, instead of one read per chunk.
 */
async function readBatch(file: FileHandle, batch: readonly Placed[]): Promise<Buffer> {
  let size = 0;
  for (const placed of batch) size += RECORD_HEADER_BYTES + placed.chunk.length;
  const body = Buffer.allocUnsafe(size);
  let at = 0;
  let i = 0;
  while (i < batch.length) {
    const first = batch[i] as Placed;
    let end = i + 1;
    let runBytes = first.chunk.length;
    while (end < batch.length && (batch[end] as Placed).offset === first.offset + runBytes) {
      runBytes += (batch[end] as Placed).chunk.length;
      end++;
    }
    const run = Buffer.allocUnsafe(runBytes);
    const read = await readFully(file, run, runBytes, first.offset);
    if (read < runBytes)
      throw new Error(`${first.offset + read}: the file is shorter than when it was chunked`);
    let runAt = 0;
    for (; i < end; i++) {
      const chunk = (batch[i] as Placed).chunk;
      at = writeRecordHeader(body, at, chunk.digest, chunk.length);
      run.copy(body, at, runAt, runAt + chunk.length);
      at += chunk.length;
      runAt += chunk.length;
    }
  }
  return body;
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
