// globalvm_image's bytes: the local file's digest (what `source_hash` defaults to) and the
// upload of a new version to the origin region's manager, with progress in the provider log.

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import type { UploadProgress } from "../../client/upload.ts";
import { type CallContext, DiagnosticError } from "../index.ts";
import type { GlobalvmProviderData } from "../provider-data.ts";

export async function fileSha256(path: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path, signal ? { signal } : {})) hash.update(chunk as Buffer);
  return `sha256:${hash.digest("hex")}`;
}

export async function upload(
  context: CallContext<GlobalvmProviderData>,
  path: string,
  ticket: { url: string; token: string; image_id: string; version: number },
  format: string,
) {
  const log = context.log.with({ image: ticket.image_id, version: ticket.version });
  let lastLog = 0;
  const onProgress = (progress: UploadProgress) => {
    const now = Date.now();
    if (now - lastLog < 2000) return;
    lastLog = now;
    log.info("uploading image", {
      step: progress.phase,
      bytes_done: progress.bytesDone,
      bytes_total: progress.bytesTotal,
      rate_bytes_per_second: Math.round(progress.bytesPerSecond),
    });
  };
  // Only an apply that sends an image needs the upload client (chunking on a worker thread,
  // HTTP/1 transfers): loaded here, it stays out of the start of every provider process.
  const { isImageRefused, uploadImage } = await import("../../client/upload.ts");
  try {
    const result = await uploadImage({
      path,
      managerUrl: ticket.url,
      token: ticket.token,
      imageId: ticket.image_id,
      version: ticket.version,
      format: format as "raw",
      signal: context.signal,
      onProgress,
    });
    log.info("image uploaded", {
      bytes_sent: result.bytesSent,
      chunks_sent: result.chunksSent,
      chunks_skipped: result.chunksSkipped,
    });
    return result;
  } catch (error) {
    if (context.signal.aborted) throw error;
    throw new DiagnosticError("Uploading the image failed", {
      detail: `${path} → ${ticket.url}: ${(error as Error).message}. ${
        isImageRefused(error)
          ? "The image's content was refused: give a standalone image of the declared format (`qemu-img convert -O qcow2` flattens a backing chain)."
          : "Applying again resumes: chunks already stored are not sent again."
      }`,
      path: ["source"],
      cause: error,
    });
  }
}
