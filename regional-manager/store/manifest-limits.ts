// What one manager accepts in a manifest (the format itself is common/image-format/manifest.ts):
// limits are this manager's policy, checked before anything is allocated for a manifest.
import {
  MANIFEST_HEADER_BYTES,
  type Manifest,
  ManifestError,
  manifestBytes,
  readManifestHeader,
} from "../../common/image-format/manifest.ts";
import { StoreError } from "./errors.ts";

/**
 * What one manager accepts in a manifest, checked from its header before the rest of it is
 * read, decoded or anything is allocated for it: a manifest costs memory for every chunk it
 * lists, and its declared size becomes a file that is truncated and hashed at commit.
 */
export interface ManifestLimits {
  /** Largest declared image size (bytes). */
  maxImageBytes: number;
  /** Most chunk entries (zero runs included). */
  maxChunks: number;
  /** Largest manifest body (bytes). */
  maxManifestBytes: number;
}

/*
 * Defaults for real images: 64 GiB declared; 4 Mi chunks hold 32 GiB of data at the chunker's
 * 8 KiB average (zero runs take one entry per 256 KiB); the manifest bytes those chunks take.
 */
const DEFAULT_MAX_CHUNKS = 4 * 1024 * 1024;
export const DEFAULT_MANIFEST_LIMITS: ManifestLimits = {
  maxImageBytes: 64 * 1024 ** 3,
  maxChunks: DEFAULT_MAX_CHUNKS,
  maxManifestBytes: manifestBytes(DEFAULT_MAX_CHUNKS),
};

/** Throws IMAGE_TOO_LARGE (413) unless `size` is within the limit. */
export function checkImageSize(size: number, limits: Pick<ManifestLimits, "maxImageBytes">): void {
  if (size > limits.maxImageBytes) {
    throw new StoreError(
      "IMAGE_TOO_LARGE",
      `the image is ${size} bytes, over this manager's limit of ${limits.maxImageBytes} (maxImageBytes)`,
    );
  }
}

/** Throws MANIFEST_TOO_LARGE (413) unless a manifest body of `bytes` is within the limit. */
export function checkManifestBytes(bytes: number, limits: ManifestLimits): void {
  if (bytes > limits.maxManifestBytes) {
    throw new StoreError(
      "MANIFEST_TOO_LARGE",
      `the manifest holds ${bytes} bytes, over this manager's limit of ${limits.maxManifestBytes} (maxManifestBytes)`,
    );
  }
}

/** Throws TOO_MANY_CHUNKS (413) unless `count` chunks are within the limit. */
export function checkChunkCount(count: number, limits: ManifestLimits): void {
  if (count > limits.maxChunks) {
    throw new StoreError(
      "TOO_MANY_CHUNKS",
      `the manifest lists ${count} chunks, over this manager's limit of ${limits.maxChunks} (maxChunks)`,
    );
  }
}

/** A decoded manifest within the limits (what the store checks before it keeps one). */
export function checkManifestLimits(manifest: Manifest, limits: ManifestLimits): void {
  checkImageSize(manifest.size, limits);
  checkChunkCount(manifest.chunks.length, limits);
}

/**
 * Reads a manifest's body, refusing it from its first bytes: the declared size and chunk
 * count in its header, and the body length they imply, are checked before the entries are
 * read. `declaredBytes` is the Content-Length, when the client sent one.
 */
export async function readManifestBody(
  body: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  limits: ManifestLimits,
  declaredBytes?: number,
): Promise<Buffer> {
  if (declaredBytes !== undefined) checkManifestBytes(declaredBytes, limits);
  const pieces: Buffer[] = [];
  let total = 0;
  let expected: number | undefined;
  for await (const piece of body) {
    total += piece.byteLength;
    pieces.push(Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength));
    if (expected === undefined && total >= MANIFEST_HEADER_BYTES) {
      const header = pieces.length === 1 ? (pieces[0] as Buffer) : Buffer.concat(pieces);
      const { size, chunkCount } = readManifestHeader(header);
      checkImageSize(size, limits);
      checkChunkCount(chunkCount, limits);
      expected = manifestBytes(chunkCount);
      checkManifestBytes(expected, limits);
    }
    if (expected !== undefined && total > expected) {
      throw new ManifestError(
        "chunks",
        `the manifest holds more than the ${expected} bytes its header announces`,
      );
    }
  }
  return Buffer.concat(pieces);
}
