import { once } from "node:events";
import type { IncomingMessage, ServerResponse } from "node:http";
import { RESPONSE_ALREADY_SENT } from "@hono/node-server/utils/response";
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { bearerToken } from "../../common/http/bearer.ts";
import { ChunkRecordDecoder, ChunkRecordError } from "../../common/image-format/chunk-records.ts";
import { DIGEST_BYTES } from "../../common/image-format/digest.ts";
import {
  type ChunkRef,
  decodeDigestList,
  decodeManifest,
  encodeDigestList,
  encodeManifest,
  type Manifest,
  ManifestError,
} from "../../common/image-format/manifest.ts";
import {
  ControlPlaneTokenError,
  type TransferAction,
  type TransferClaims,
  type TransferTokenVerifier,
} from "../../common/tokens/transfer-token.ts";
import {
  ImageVersionParams,
  type Log,
  managerRoutes,
  problemResponses,
  transferTokenSecurity,
} from "../http/openapi.ts";
import { invalidField } from "../http/problems.ts";
import type { TransferRecorder } from "../metrics.ts";
import { READ_BUFFER_BYTES } from "../store/chunk-store.ts";
import { StoreError } from "../store/errors.ts";
import type { ImageStore } from "../store/image-store.ts";
import { diffManifests, encodeManifestDelta } from "../store/manifest-delta.ts";
import { checkImageSize, readManifestBody } from "../store/manifest-limits.ts";
import { BufferPool } from "./buffer-pool.ts";
import { availableReport, type ReplicaReporter } from "./reporter.ts";
import { parseImageDigestHeader, receiveWholeImage } from "./whole-upload.ts";

export interface TransferAppOptions {
  store: ImageStore;
  verifier: TransferTokenVerifier;
  /** Told when an uploaded version becomes available (the lead maps it to the catalog). */
  reporter?: ReplicaReporter;
  /** Where failures the manager did not expect (500s) are told. */
  log?: Log;
  /** Counts the bytes and chunks that move (regional-manager/metrics.ts). */
  recorder?: TransferRecorder;
}

const FormatQuery = z.object({
  format: z
    .enum(["raw", "qcow2", "iso"])
    .optional()
    .openapi({ description: "The image's format (default raw); checked against its content at commit." }),
});

const VersionRecordSchema = z
  .object({
    imageId: z.string(),
    version: z.number().int(),
    state: z.enum(["pending", "available"]),
    size: z.number().int(),
    digest: z.string(),
    format: z.enum(["raw", "qcow2", "iso"]),
    chunkCount: z.number().int(),
    localId: z.string().optional(),
  })
  .openapi("ImageVersionRecord");

const binaryBody = (description: string) => ({
  required: true,
  content: { "application/octet-stream": { schema: z.string().openapi({ format: "binary", description }) } },
});
const binaryAnswer = (description: string) => ({
  description,
  content: { "application/octet-stream": { schema: z.string().openapi({ format: "binary" }) } },
});
const security = transferTokenSecurity;

export const transferRoutes = {
  putUploadManifest: createRoute({
    operationId: "putUploadManifest",
    method: "put",
    path: "/v1/uploads/{imageId}/versions/{version}/manifest",
    tags: ["uploads"],
    summary:
      "Declare the manifest of an image version to upload; answers the digests to send: those neither in an image of the token's project here nor sent already",
    security,
    request: {
      params: ImageVersionParams,
      query: FormatQuery,
      body: binaryBody("Binary manifest (see common/image-format/manifest.ts)"),
    },
    responses: {
      200: binaryAnswer("Concatenated 32-byte digests of the missing chunks (x-missing-chunks: their count)"),
      ...problemResponses(400, 401, 403, 409, 413),
    },
  }),
  postUploadChunks: createRoute({
    operationId: "postUploadChunks",
    method: "post",
    path: "/v1/uploads/{imageId}/versions/{version}/chunks",
    tags: ["uploads"],
    summary: "Send chunks of the version (records: digest, length, data); each is verified and stored",
    security,
    request: { params: ImageVersionParams, body: binaryBody("Chunk records") },
    responses: {
      200: {
        content: {
          "application/json": {
            schema: z.object({
              received: z.number().int(),
              stored: z.number().int().openapi({ description: "Chunks new to this version" }),
            }),
          },
        },
        description: "Chunks stored durably",
      },
      ...problemResponses(400, 401, 403, 404, 422, 507),
    },
  }),
  commitUpload: createRoute({
    operationId: "commitUpload",
    method: "post",
    path: "/v1/uploads/{imageId}/versions/{version}/commit",
    tags: ["uploads"],
    summary: "Assemble the image, verify its digest and make the version available",
    security,
    request: { params: ImageVersionParams },
    responses: {
      200: {
        content: { "application/json": { schema: VersionRecordSchema } },
        description: "Available version",
      },
      ...problemResponses(400, 401, 403, 404, 409, 422),
    },
  }),
  putWholeImage: createRoute({
    operationId: "putWholeImage",
    method: "put",
    path: "/v1/uploads/{imageId}/versions/{version}/image",
    tags: ["uploads"],
    summary:
      "Send the whole image in one request (for clients that do not chunk); the manager chunks, verifies and commits it",
    security,
    request: {
      params: ImageVersionParams,
      query: FormatQuery,
      headers: z.object({
        "x-image-digest": z
          .string()
          .trim()
          .regex(/^(sha256:)?[0-9a-fA-F]{64}$/, "must be sha256:<64 hex digits>")
          .optional()
          .openapi({ description: "sha256:<hex> the image must match" }),
      }),
      body: binaryBody("The image's bytes"),
    },
    responses: {
      200: {
        content: { "application/json": { schema: VersionRecordSchema } },
        description: "Available version",
      },
      ...problemResponses(400, 401, 403, 409, 413, 422, 507),
    },
  }),
  getPeerManifest: createRoute({
    operationId: "getPeerManifest",
    method: "get",
    path: "/v1/transfer/{imageId}/versions/{version}/manifest",
    tags: ["transfer"],
    summary:
      "Manifest of an available version, for a peer manager; with ?base=N (a version the peer holds) it may come as a delta from N (x-manifest-base tells)",
    security,
    request: {
      params: ImageVersionParams,
      query: z.object({
        base: z.coerce
          .number()
          .int()
          .min(1)
          .optional()
          .openapi({ description: "A version the caller holds, to receive the manifest as a delta from" }),
      }),
    },
    responses: {
      200: binaryAnswer("Binary manifest, or a manifest delta when x-manifest-base is set"),
      ...problemResponses(400, 401, 403, 404),
    },
  }),
  postPeerChunks: createRoute({
    operationId: "postPeerChunks",
    method: "post",
    path: "/v1/transfer/{imageId}/versions/{version}/chunks",
    tags: ["transfer"],
    summary: "Stream the requested chunks of an available version, in the order asked",
    security,
    request: {
      params: ImageVersionParams,
      query: z.object({
        peer: z
          .string()
          .regex(/^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/)
          .optional()
          .openapi({ description: "The pulling datacenter's name, for this manager's metrics only" }),
      }),
      body: binaryBody("Concatenated 32-byte digests"),
    },
    responses: {
      200: binaryAnswer(
        "The data of the chunks asked for, concatenated in the order asked (Content-Length set)",
      ),
      ...problemResponses(400, 401, 403, 404, 422),
    },
  }),
};

/** The project of an upload token (the verifier refuses one without). */
function uploadProject(claims: TransferClaims): string {
  if (claims.projectId === undefined)
    throw new ControlPlaneTokenError("TOKEN_INVALID", "the upload token names no project");
  return claims.projectId;
}

/**
 * The request body as a stream of byte pieces. Under @hono/node-server the Node request is
 * read directly: its web-stream adapter halves the throughput of bulk uploads.
 */
function requestBody(c: Context): AsyncIterable<Uint8Array> | undefined {
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  // Not destroyed when a handler stops reading early (a body over a limit): the refusal is
  // answered, then the server drains or closes the connection.
  if (incoming && typeof incoming.read === "function" && !incoming.readableEnded)
    return incoming.iterator({ destroyOnReturn: false });
  return c.req.raw.body ?? undefined;
}

/** The Content-Length the client announced, if any. */
function contentLength(c: Context): number | undefined {
  const value = Number(c.req.header("content-length"));
  return c.req.header("content-length") !== undefined && Number.isSafeInteger(value) ? value : undefined;
}

/**
 * An upload ticket may carry the most bytes the version may declare (the project's storage
 * quota the control plane checked when it issued it).
 */
function checkTicketSize(size: number, claims: TransferClaims): void {
  if (claims.maxBytes !== undefined && size > claims.maxBytes) {
    throw new StoreError(
      "IMAGE_TOO_LARGE",
      `the image declares ${size} bytes, over the ${claims.maxBytes} its upload ticket allows (the project's storage quota)`,
    );
  }
}

/** A peer names each chunk it wants once: a list that repeats one would amplify the answer. */
function checkDistinct(digests: readonly string[]): void {
  const seen = new Set<string>();
  for (const digest of digests) {
    if (seen.has(digest)) throw new ManifestError("digests", `chunk ${digest} is asked for twice`);
    seen.add(digest);
  }
}

async function readBody(c: Context, limit: number): Promise<Buffer> {
  const body = requestBody(c);
  if (!body) return Buffer.alloc(0);
  const pieces: Buffer[] = [];
  let total = 0;
  for await (const piece of body) {
    total += piece.byteLength;
    if (total > limit) throw new ChunkRecordError(`the request body exceeds ${limit} bytes`);
    pieces.push(Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength));
  }
  return Buffer.concat(pieces);
}

// Per-manifest lookup of chunk lengths, built once per version rather than per request.
const lengthsByManifest = new WeakMap<Manifest, Map<string, ChunkRef>>();
function chunkIndex(manifest: Manifest): Map<string, ChunkRef> {
  let index = lengthsByManifest.get(manifest);
  if (!index) {
    index = new Map();
    for (const chunk of manifest.chunks) if (!chunk.zero) index.set(chunk.digest, chunk);
    lengthsByManifest.set(manifest, index);
  }
  return index;
}

/**
 * The regional manager's upload and peer-transfer endpoints. Every request needs a transfer
 * token for its image version, this datacenter and the route's action.
 */
export function createTransferApp(options: TransferAppOptions): OpenAPIHono {
  const { store, verifier, reporter, recorder } = options;
  const app = managerRoutes(options.log);
  // A sending pull holds at most three: one read ahead, one read, one the socket has yet to take.
  const sendBuffers = new BufferPool(READ_BUFFER_BYTES, 12);
  const authorize = (c: Context, imageId: string, version: number, action: TransferAction) =>
    verifier.verify(bearerToken(c.req.header("authorization")), { imageId, version, action });

  app.openapi(transferRoutes.putUploadManifest, async (c) => {
    const { imageId, version } = c.req.valid("param");
    const { format } = c.req.valid("query");
    const claims = await authorize(c, imageId, version, "upload");
    const body = requestBody(c) ?? [];
    const manifest = decodeManifest(await readManifestBody(body, store.limits, contentLength(c)));
    checkTicketSize(manifest.size, claims);
    const project = uploadProject(claims);
    await store.beginVersion(imageId, version, manifest, { ...(format ? { format } : {}), project });
    // Scoped to the project: see missingChunksOfUpload.
    const missing = await store.missingChunksOfUpload(imageId, version, project);
    // What the client need not send: the dedup the upload gains from what is stored here.
    recorder?.chunks("upload", "skipped", Math.max(0, chunkIndex(manifest).size - missing.length));
    return c.body(new Uint8Array(encodeDigestList(missing)), 200, {
      "content-type": "application/octet-stream",
      "x-missing-chunks": String(missing.length),
    });
  });

  app.openapi(transferRoutes.postUploadChunks, async (c) => {
    const { imageId, version } = c.req.valid("param");
    await authorize(c, imageId, version, "upload");
    const manifest = store.getManifest(imageId, version);
    if (!manifest)
      throw new StoreError("VERSION_NOT_FOUND", `send the manifest of ${imageId} version ${version} first`);
    // Each chunk is verified and written once, in place, into the version's image, as a
    // pulled one is (see partial-image.ts): not into a pack first and copied at the commit.
    const writer = await store.receiver(imageId, version);
    const decoder = new ChunkRecordDecoder();
    let received = 0;
    let stored = 0;
    try {
      const body = requestBody(c);
      if (body) {
        for await (const piece of body) {
          for (const record of decoder.push(piece)) {
            received++;
            recorder?.bytesIn("client", record.data.length);
            // Counted per version: whether another image holds the chunk is not the sender's to know.
            if (await writer.receive(record.digest, record.data)) stored++;
          }
        }
      }
      if (!decoder.atBoundary) throw new ChunkRecordError("the chunk stream ends inside a record");
    } catch (error) {
      if (error instanceof StoreError && error.code === "CHUNK_DIGEST_MISMATCH")
        recorder?.verificationFailed("upload");
      throw error;
    } finally {
      recorder?.chunks("upload", "received", received);
      // What was verified is kept even when the request fails: a retry will not resend it.
      await writer.flush();
    }
    return c.json({ received, stored }, 200);
  });

  app.openapi(transferRoutes.commitUpload, async (c) => {
    const { imageId, version } = c.req.valid("param");
    const claims = await authorize(c, imageId, version, "upload");
    const record = await store.completeVersion(imageId, version, uploadProject(claims));
    await reporter?.reportReplica(availableReport(record));
    return c.json(record, 200);
  });

  app.openapi(transferRoutes.putWholeImage, async (c) => {
    const { imageId, version } = c.req.valid("param");
    const { format } = c.req.valid("query");
    const digestHeader = c.req.valid("header")["x-image-digest"];
    const claims = await authorize(c, imageId, version, "upload");
    const declared = contentLength(c);
    if (declared !== undefined) {
      checkImageSize(declared, store.limits);
      checkTicketSize(declared, claims);
    }
    const sent = requestBody(c);
    if (!sent) throw invalidField("body", "send the image as the body");
    const body = recorder ? countedBody(sent, (bytes) => recorder.bytesIn("client", bytes)) : sent;
    const record = await receiveWholeImage(store, {
      imageId,
      version,
      project: uploadProject(claims),
      body,
      maxBytes: Math.min(store.limits.maxImageBytes, claims.maxBytes ?? Number.MAX_SAFE_INTEGER),
      ...(format ? { format } : {}),
      ...(digestHeader !== undefined ? { expectedDigest: parseImageDigestHeader(digestHeader) } : {}),
    });
    await reporter?.reportReplica(availableReport(record));
    return c.json(record, 200);
  });

  app.openapi(transferRoutes.getPeerManifest, async (c) => {
    const { imageId, version } = c.req.valid("param");
    const { base } = c.req.valid("query");
    await authorize(c, imageId, version, "read");
    const { record, manifest } = availableVersion(store, imageId, version);
    const headers: Record<string, string> = {
      "content-type": "application/octet-stream",
      "x-image-format": record.format,
    };
    // The puller names a version it holds: send the manifest as a difference from it.
    const baseManifest = base !== undefined ? store.getManifest(imageId, base) : undefined;
    if (base !== undefined && baseManifest && store.getVersion(imageId, base)?.state === "available") {
      const delta = encodeManifestDelta(manifest, diffManifests(baseManifest, manifest));
      return c.body(new Uint8Array(delta), 200, { ...headers, "x-manifest-base": String(base) });
    }
    return c.body(new Uint8Array(encodeManifest(manifest)), 200, headers);
  });

  app.openapi(transferRoutes.postPeerChunks, async (c) => {
    const { imageId, version } = c.req.valid("param");
    const { peer } = c.req.valid("query");
    await authorize(c, imageId, version, "read");
    const { manifest } = availableVersion(store, imageId, version);
    const index = chunkIndex(manifest);
    const sent = (bytes: number) => recorder?.bytesOut(peer ?? "unknown", bytes);
    // No request names more than the version's distinct chunks.
    const digests = decodeDigestList(await readBody(c, index.size * DIGEST_BYTES));
    checkDistinct(digests);
    // Only chunks of this version are served: a read token does not open the whole store.
    let length = 0;
    for (const digest of digests) {
      const chunk = index.get(digest);
      if (!chunk) throw new StoreError("CHUNK_NOT_REFERENCED", `chunk ${digest} is not part of this version`);
      length += chunk.length;
    }
    const headers = {
      "content-type": "application/octet-stream",
      "content-length": String(length),
      "x-chunk-count": String(digests.length),
    };
    const outgoing = (c.env as { outgoing?: ServerResponse } | undefined)?.outgoing;
    if (outgoing) {
      sendChunkData(outgoing, headers, store, digests, sendBuffers, sent);
      return RESPONSE_ALREADY_SENT as never;
    }
    return c.body(chunkDataStream(store, digests, sent), 200, headers);
  });

  return app;
}

/** A version a peer may read: available here, with its manifest. */
function availableVersion(store: ImageStore, imageId: string, version: number) {
  const record = store.getVersion(imageId, version);
  const manifest = store.getManifest(imageId, version);
  if (record?.state !== "available" || !manifest) {
    throw new StoreError("VERSION_NOT_FOUND", `image ${imageId} version ${version} is not available here`);
  }
  return { record, manifest };
}

/*
 * A pull's chunks leave as their bare data, concatenated in the order asked (the puller knows
 * every digest and length, and checks each chunk against the digest it asked for). Under
 * @hono/node-server the data is read into a few reused buffers and written to the socket
 * directly: a fresh buffer per read, passed through a web stream, cost the source about
 * 1 s of CPU per GiB in allocation and garbage collection.
 */
function sendChunkData(
  response: ServerResponse,
  headers: Record<string, string>,
  store: ImageStore,
  digests: readonly string[],
  pool: BufferPool,
  sent: (bytes: number) => void,
): void {
  // A puller that goes away stops the reads, and whatever waits for the socket.
  const gone = new AbortController();
  response.once("close", () => gone.abort());
  const send = async () => {
    response.writeHead(200, headers);
    for await (const data of store.chunks.readData(digests, () => pool.take())) {
      const drained = response.write(data, (error) => {
        if (!error) sent(data.length);
        pool.give(data);
      });
      if (!drained) await once(response, "drain", { signal: gone.signal });
    }
    response.end();
  };
  send().catch(() => {
    // The head is gone: the puller learns of the failure from a body shorter than announced.
    response.destroy();
  });
}

/** The same bytes as a web stream, for callers of the app that are not a Node server (tests). */
function chunkDataStream(
  store: ImageStore,
  digests: readonly string[],
  sent: (bytes: number) => void,
): ReadableStream<Uint8Array> {
  const data = store.chunks.readData(digests, () => Buffer.allocUnsafe(READ_BUFFER_BYTES));
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = await data.next();
      if (next.done) controller.close();
      else {
        sent(next.value.length);
        controller.enqueue(next.value);
      }
    },
    async cancel() {
      await data.return(undefined);
    },
  });
}

/** The body, telling `count` of each piece as it is read (a whole-image upload's bytes). */
async function* countedBody(
  body: AsyncIterable<Uint8Array>,
  count: (bytes: number) => void,
): AsyncIterable<Uint8Array> {
  for await (const piece of body) {
    count(piece.byteLength);
    yield piece;
  }
}
