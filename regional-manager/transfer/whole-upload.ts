// The whole image in one request (PUT .../image), for clients that do not chunk: curl, or a
// client generated from the manager's OpenAPI document. The manager spools the body into its
// data dir, chunks it exactly as uploadImage would, stores only the chunks it lacks, and
// commits. With x-image-digest, a body whose sha256 differs is refused and nothing is kept.
import { randomUUID } from "node:crypto";
import { mkdir, open, rm } from "node:fs/promises";
import { join } from "node:path";
import { chunkFile } from "../../common/image-format/chunk-file.ts";
import { ManifestError } from "../../common/image-format/manifest.ts";
import { StoreError } from "../store/errors.ts";
import type { ImageFormat, ImageStore, VersionRecord } from "../store/image-store.ts";
import { checkImageSize } from "../store/manifest-limits.ts";

/** `sha256:<hex>` or `<hex>` → the bare lowercase hex the store uses; undefined when absent. */
export function parseImageDigestHeader(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const hex = value
    .trim()
    .replace(/^sha256:/i, "")
    .toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) {
    throw new ManifestError("x-image-digest", "must be sha256:<64 hex digits>");
  }
  return hex;
}

export interface WholeImageUpload {
  imageId: string;
  version: number;
  /** The uploader's project (from its token): what it may reuse is scoped to it. */
  project: string;
  body: AsyncIterable<Uint8Array>;
  format?: ImageFormat;
  /** The body is refused (IMAGE_TOO_LARGE) as soon as it passes this many bytes. */
  maxBytes: number;
  /** Bare hex sha256 the client declared; the image must match it. */
  expectedDigest?: string;
}

export async function receiveWholeImage(store: ImageStore, upload: WholeImageUpload): Promise<VersionRecord> {
  const spoolDir = join(store.dataDir, "uploads");
  await mkdir(spoolDir, { recursive: true });
  const spool = join(spoolDir, `${upload.imageId}-${upload.version}-${randomUUID()}.part`);
  try {
    const file = await open(spool, "w");
    try {
      let received = 0;
      for await (const piece of upload.body) {
        received += piece.byteLength;
        checkImageSize(received, { maxImageBytes: upload.maxBytes });
        await file.write(piece);
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOSPC") {
        throw new StoreError("DISK_FULL", "no space left to receive the image", { cause: error });
      }
      throw error;
    } finally {
      await file.close();
    }
    const manifest = await chunkFile(spool);
    if (upload.expectedDigest && manifest.digest !== upload.expectedDigest) {
      throw new StoreError(
        "IMAGE_DIGEST_MISMATCH",
        `the image received has sha256 ${manifest.digest}, not ${upload.expectedDigest} (x-image-digest); nothing was kept`,
      );
    }
    await store.beginVersion(upload.imageId, upload.version, manifest, {
      ...(upload.format ? { format: upload.format } : {}),
      project: upload.project,
    });
    const missing = new Set(
      await store.missingChunksOfUpload(upload.imageId, upload.version, upload.project),
    );
    const reader = await open(spool, "r");
    // Into the version's image, in place, as a chunked upload's chunks are.
    const writer = await store.receiver(upload.imageId, upload.version);
    try {
      let offset = 0;
      for (const chunk of manifest.chunks) {
        if (missing.delete(chunk.digest)) {
          const data = Buffer.allocUnsafe(chunk.length);
          await reader.read(data, 0, chunk.length, offset);
          await writer.receive(chunk.digest, data);
        }
        offset += chunk.length;
      }
    } finally {
      await reader.close();
      await writer.flush();
    }
    return await store.completeVersion(upload.imageId, upload.version, upload.project);
  } finally {
    await rm(spool, { force: true });
  }
}
