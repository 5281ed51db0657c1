import { once } from "node:events";
import type { IncomingMessage, ServerResponse } from "node:http";
import { RESPONSE_ALREADY_SENT } from "@hono/node-server/utils/response";
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
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
  type TransferAction,
  type TransferClaims,
  TransferTokenError,
  type TransferTokenVerifier,
} from "../../common/tokens/transfer-token.ts";
import { READ_BUFFER_BYTES } from "../store/chunk-store.ts";
import { StoreError } from "../store/errors.ts";
import type { ImageFormat, ImageStore } from "../store/image-store.ts";
import { diffManifests, encodeManifestDelta } from "../store/manifest-delta.ts";
import { checkImageSize, readManifestBody } from "../store/manifest-limits.ts";
import { BufferPool } from "./buffer-pool.ts";
import { problem, problemFromError, problemResponse } from "./problems.ts";
import { availableReport, type ReplicaReporter } from "./reporter.ts";
import { parseImageDigestHeader, receiveWholeImage } from "./whole-upload.ts";

export interface TransferAppOptions {
  store: ImageStore;
  verifier: TransferTokenVerifier;
  /** Told when an uploaded version becomes available (the lead maps it to the catalog). */
  reporter?: ReplicaReporter;
}

const VersionParams = z.object({
  imageId: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/)
    .openapi({ example: "img_01hz" }),
  version: z.coerce.number().int().min(1).openapi({ example: 1 }),
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

const ProblemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    code: z.string(),
    detail: z.string(),
    field: z.string().optional(),
  })
  .openapi("Problem");

const binary = (description: string) => ({
  content: { "application/octet-stream": { schema: z.string().openapi({ format: "binary" }) } },
  description,
});
const problems = {
  400: { content: { "application/problem+json": { schema: ProblemSchema } }, description: "Invalid input" },
  401: {
    content: { "application/problem+json": { schema: ProblemSchema } },
    description: "Missing or invalid token",
  },
  403: {
    content: { "application/problem+json": { schema: ProblemSchema } },
    description: "Token for another scope",
  },
};
const security = [{ transferToken: [] }];

export const transferRoutes = {
  putUploadManifest: createRoute({
    method: "put",
    path: "/v1/uploads/{imageId}/versions/{version}/manifest",
    summary:
      "Declare the manifest of an image version to upload; answers the digests to send: those neither in an image of the token's project here nor sent already",
    security,
    request: {
      params: VersionParams,
      query: z.object({ format: z.enum(["raw", "qcow2", "iso"]).optional() }),
      body: {
        content: binary("Binary manifest (see common/image-format/manifest.ts)").content,
        required: true,
      },
    },
    responses: { 200: binary("Concatenated 32-byte digests of the missing chunks"), ...problems },
  }),
  postUploadChunks: createRoute({
    method: "post",
    path: "/v1/uploads/{imageId}/versions/{version}/chunks",
    summary: "Send chunks of the version (records: digest, length, data); each is verified and stored",
    security,
    request: { params: VersionParams, body: { content: binary("Chunk records").content, required: true } },
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
      ...problems,
    },
  }),
  commitUpload: createRoute({
    method: "post",
    path: "/v1/uploads/{imageId}/versions/{version}/commit",
    summary: "Assemble the image, verify its digest and make the version available",
    security,
    request: { params: VersionParams },
    responses: {
      200: {
        content: { "application/json": { schema: VersionRecordSchema } },
        description: "Available version",
      },
      ...problems,
    },
  }),
  putWholeImage: createRoute({
    method: "put",
    path: "/v1/uploads/{imageId}/versions/{version}/image",
    summary:
      "Send the whole image in one request (for clients that do not chunk); the manager chunks, verifies and commits it",
    security,
    request: {
      params: VersionParams,
      query: z.object({ format: z.enum(["raw", "qcow2", "iso"]).optional() }),
      headers: z.object({
        "x-image-digest": z.string().optional().openapi({ description: "sha256:<hex> the image must match" }),
      }),
      body: { content: binary("The image's bytes").content, required: true },
    },
    responses: {
      200: {
        content: { "application/json": { schema: VersionRecordSchema } },
        description: "Available version",
      },
      ...problems,
    },
  }),
  getPeerManifest: createRoute({
    method: "get",
    path: "/v1/transfer/{imageId}/versions/{version}/manifest",
    summary:
      "Manifest of an available version, for a peer manager; with ?base=N (a version the peer holds) it may come as a delta from N (x-manifest-base tells)",
    security,
    request: { params: VersionParams, query: z.object({ base: z.coerce.number().int().min(1).optional() }) },
    responses: { 200: binary("Binary manifest"), ...problems },
  }),
  postPeerChunks: createRoute({
    method: "post",
    path: "/v1/transfer/{imageId}/versions/{version}/chunks",
    summary: "Stream the requested chunks of an available version, in the order asked",
    security,
    request: {
      params: VersionParams,
      body: { content: binary("Concatenated 32-byte digests").content, required: true },
    },
    responses: {
      200: binary("The data of the chunks asked for, concatenated in the order asked (Content-Length set)"),
      ...problems,
    },
  }),
};

/** An absent ?format= is fine (the store defaults it); a present one must name a format. */
function isFormat(value: string | undefined): value is ImageFormat | undefined {
  return value === undefined || value === "raw" || value === "qcow2" || value === "iso";
}

/** The project of an upload token (the verifier refuses one without). */
function uploadProject(claims: TransferClaims): string {
  if (claims.projectId === undefined)
    throw new TransferTokenError("TOKEN_INVALID", "the upload token names no project");
  return claims.projectId;
}

function bearer(c: Context): string | undefined {
  const header = c.req.header("authorization");
  return header?.startsWith("Bearer ") ? header.slice(7).trim() : undefined;
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
 * The regional manager's upload and peer-transfer endpoints, as a sub-app to mount at the
 * root of the manager's app. Every request needs a transfer token for its image version,
 * this datacenter and the route's action.
 */
export function createTransferApp(options: TransferAppOptions): OpenAPIHono {
  const { store, verifier, reporter } = options;
  const app = new OpenAPIHono();
  // A sending pull holds at most three: one read ahead, one read, one the socket has yet to take.
  const sendBuffers = new BufferPool(READ_BUFFER_BYTES, 12);
  app.openAPIRegistry.registerComponent("securitySchemes", "transferToken", {
    type: "http",
    scheme: "bearer",
  });
  for (const route of Object.values(transferRoutes)) app.openAPIRegistry.registerPath(route);

  const handle = (
    action: TransferAction,
    run: (c: Context, imageId: string, version: number, claims: TransferClaims) => Promise<Response>,
  ) => {
    return async (c: Context) => {
      try {
        const parsed = VersionParams.safeParse(c.req.param());
        if (!parsed.success) {
          const issue = parsed.error.issues[0];
          return problemResponse(
            problem(400, "INVALID_PARAMETER", issue?.message ?? "invalid", String(issue?.path[0])),
          );
        }
        const { imageId, version } = parsed.data;
        const claims = await verifier.verify(bearer(c), { imageId, version, action });
        return await run(c, imageId, version, claims);
      } catch (error) {
        return problemResponse(problemFromError(error));
      }
    };
  };

  app.put(
    "/v1/uploads/:imageId/versions/:version/manifest",
    handle("upload", async (c, imageId, version, claims) => {
      const format = c.req.query("format");
      if (!isFormat(format)) {
        return problemResponse(problem(400, "INVALID_PARAMETER", "format is raw, qcow2 or iso", "format"));
      }
      const body = requestBody(c) ?? [];
      const manifest = decodeManifest(await readManifestBody(body, store.limits, contentLength(c)));
      checkTicketSize(manifest.size, claims);
      const project = uploadProject(claims);
      await store.beginVersion(imageId, version, manifest, { ...(format ? { format } : {}), project });
      // Scoped to the project: see missingChunksOfUpload.
      const missing = await store.missingChunksOfUpload(imageId, version, project);
      return new Response(encodeDigestList(missing), {
        headers: { "content-type": "application/octet-stream", "x-missing-chunks": String(missing.length) },
      });
    }),
  );

  app.post(
    "/v1/uploads/:imageId/versions/:version/chunks",
    handle("upload", async (c, imageId, version) => {
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
              // Counted per version: whether another image holds the chunk is not the sender's to know.
              if (await writer.receive(record.digest, record.data)) stored++;
            }
          }
        }
        if (!decoder.atBoundary) throw new ChunkRecordError("the chunk stream ends inside a record");
      } finally {
        // What was verified is kept even when the request fails: a retry will not resend it.
        await writer.flush();
      }
      return c.json({ received, stored });
    }),
  );

  app.post(
    "/v1/uploads/:imageId/versions/:version/commit",
    handle("upload", async (c, imageId, version, claims) => {
      const record = await store.completeVersion(imageId, version, uploadProject(claims));
      await reporter?.reportReplica(availableReport(record));
      return c.json(record);
    }),
  );

  app.put(
    "/v1/uploads/:imageId/versions/:version/image",
    handle("upload", async (c, imageId, version, claims) => {
      const format = c.req.query("format");
      if (!isFormat(format)) {
        return problemResponse(problem(400, "INVALID_PARAMETER", "format is raw, qcow2 or iso", "format"));
      }
      const declared = contentLength(c);
      if (declared !== undefined) {
        checkImageSize(declared, store.limits);
        checkTicketSize(declared, claims);
      }
      const body = requestBody(c);
      if (!body)
        return problemResponse(problem(400, "INVALID_PARAMETER", "send the image as the body", "body"));
      const record = await receiveWholeImage(store, {
        imageId,
        version,
        project: uploadProject(claims),
        body,
        maxBytes: Math.min(store.limits.maxImageBytes, claims.maxBytes ?? Number.MAX_SAFE_INTEGER),
        ...(format ? { format } : {}),
        ...(c.req.header("x-image-digest") !== undefined
          ? { expectedDigest: parseImageDigestHeader(c.req.header("x-image-digest")) }
          : {}),
      });
      await reporter?.reportReplica(availableReport(record));
      return c.json(record);
    }),
  );

  app.get(
    "/v1/transfer/:imageId/versions/:version/manifest",
    handle("read", async (c, imageId, version) => {
      const record = store.getVersion(imageId, version);
      const manifest = store.getManifest(imageId, version);
      if (record?.state !== "available" || !manifest) {
        throw new StoreError(
          "VERSION_NOT_FOUND",
          `image ${imageId} version ${version} is not available here`,
        );
      }
      const headers: Record<string, string> = {
        "content-type": "application/octet-stream",
        "x-image-format": record.format,
      };
      // The puller names a version it holds: send the manifest as a difference from it.
      const base = Number(c.req.query("base"));
      const baseManifest =
        Number.isSafeInteger(base) && base >= 1 ? store.getManifest(imageId, base) : undefined;
      if (baseManifest && store.getVersion(imageId, base)?.state === "available") {
        const delta = encodeManifestDelta(manifest, diffManifests(baseManifest, manifest));
        return new Response(delta, { headers: { ...headers, "x-manifest-base": String(base) } });
      }
      return new Response(encodeManifest(manifest), { headers });
    }),
  );

  app.post(
    "/v1/transfer/:imageId/versions/:version/chunks",
    handle("read", async (c, imageId, version) => {
      const record = store.getVersion(imageId, version);
      const manifest = store.getManifest(imageId, version);
      if (record?.state !== "available" || !manifest) {
        throw new StoreError(
          "VERSION_NOT_FOUND",
          `image ${imageId} version ${version} is not available here`,
        );
      }
      const index = chunkIndex(manifest);
      // No request names more than the version's distinct chunks.
      const digests = decodeDigestList(await readBody(c, index.size * DIGEST_BYTES));
      checkDistinct(digests);
      // Only chunks of this version are served: a read token does not open the whole store.
      let length = 0;
      for (const digest of digests) {
        const chunk = index.get(digest);
        if (!chunk)
          throw new StoreError("CHUNK_NOT_REFERENCED", `chunk ${digest} is not part of this version`);
        length += chunk.length;
      }
      const headers = {
        "content-type": "application/octet-stream",
        "content-length": String(length),
        "x-chunk-count": String(digests.length),
      };
      const outgoing = (c.env as { outgoing?: ServerResponse } | undefined)?.outgoing;
      if (outgoing) {
        sendChunkData(outgoing, headers, store, digests, sendBuffers);
        return RESPONSE_ALREADY_SENT;
      }
      return new Response(chunkDataStream(store, digests), { headers });
    }),
  );

  return app;
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
): void {
  // A puller that goes away stops the reads, and whatever waits for the socket.
  const gone = new AbortController();
  response.once("close", () => gone.abort());
  const send = async () => {
    response.writeHead(200, headers);
    for await (const data of store.chunks.readData(digests, () => pool.take())) {
      const drained = response.write(data, () => pool.give(data));
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
function chunkDataStream(store: ImageStore, digests: readonly string[]): ReadableStream<Uint8Array> {
  const data = store.chunks.readData(digests, () => Buffer.allocUnsafe(READ_BUFFER_BYTES));
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = await data.next();
      if (next.done) controller.close();
      else controller.enqueue(next.value);
    },
    async cancel() {
      await data.return(undefined);
    },
  });
}
