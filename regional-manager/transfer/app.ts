import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { CONNECTION_BODY_UPGRADE } from "../../common/binary-http.ts";
import { bearerToken } from "../../common/http/bearer.ts";
import { ChunkRecordDecoder, ChunkRecordError } from "../../common/image-format/chunk-records.ts";
import { DIGEST_BYTES } from "../../common/image-format/digest.ts";
import { decodeDigestList, decodeManifest, encodeDigestList } from "../../common/image-format/manifest.ts";
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
import { StoreError } from "../store/errors.ts";
import { layoutOf } from "../store/image-layout.ts";
import type { ImageStore } from "../store/image-store.ts";
import { checkImageSize, readManifestBody } from "../store/manifest-limits.ts";
import {
  binaryAnswer,
  binaryBody,
  contentLength,
  readBody,
  requestBody,
  requestBodySource,
} from "./binary-bodies.ts";
import { countedSource } from "./body-source.ts";
import { registerPeerRoutes } from "./peer-routes.ts";
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

const security = transferTokenSecurity;

/** Digests one probe may ask about: a sample, not a manifest. */
const MAX_PROBE_DIGESTS = 4096;

const uploadRoutes = {
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
  postUploadProbe: createRoute({
    operationId: "postUploadProbe",
    method: "post",
    path: "/v1/uploads/{imageId}/versions/{version}/probe",
    tags: ["uploads"],
    summary: `Ask, before any manifest, which of up to ${MAX_PROBE_DIGESTS} chunk digests an upload of this version would have to send: a client probes a sample of its image to choose between sending chunks and sending the image whole`,
    security,
    request: { params: ImageVersionParams, body: binaryBody("Concatenated 32-byte chunk digests") },
    responses: {
      200: binaryAnswer("The digests of the body that would have to be sent (x-missing-chunks: their count)"),
      ...problemResponses(400, 401, 403),
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
    description: `With \`Connection: Upgrade\` and \`Upgrade: ${CONNECTION_BODY_UPGRADE}\` (and a Content-Length), the body is read off the connection straight into the manager's buffers, at about half its CPU cost otherwise; the protocol is not switched: the answer is the same, and the connection then closes.`,
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
};

/** The project of an upload token (the verifier refuses one without). */
function uploadProject(claims: TransferClaims): string {
  if (claims.projectId === undefined)
    throw new ControlPlaneTokenError("TOKEN_INVALID", "the upload token names no project");
  return claims.projectId;
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

/**
 * The regional manager's upload and peer-transfer endpoints. Every request needs a transfer
 * token for its image version, this datacenter and the route's action.
 */
export function createTransferApp(options: TransferAppOptions): OpenAPIHono {
  const { store, verifier, reporter, recorder } = options;
  const app = managerRoutes(options.log);
  const authorize = (c: Context, imageId: string, version: number, action: TransferAction) =>
    verifier.verify(bearerToken(c.req.header("authorization")), { imageId, version, action });

  app.openapi(uploadRoutes.putUploadManifest, async (c) => {
    const { imageId, version } = c.req.valid("param");
    const { format } = c.req.valid("query");
    const claims = await authorize(c, imageId, version, "upload");
    const body = requestBody(c) ?? [];
    const encoded = await readManifestBody(body, store.limits, contentLength(c));
    const manifest = decodeManifest(encoded);
    checkTicketSize(manifest.size, claims);
    const project = uploadProject(claims);
    await store.beginVersion(imageId, version, manifest, { ...(format ? { format } : {}), project, encoded });
    // Scoped to the project: see missingChunksOfUpload.
    const missing = await store.missingChunksOfUpload(imageId, version, project);
    if (missing.length > 0) await store.startReceiving(imageId, version);
    // What the client need not send: the dedup the upload gains from what is stored here.
    recorder?.chunks("upload", "skipped", Math.max(0, layoutOf(manifest).positions.size - missing.length));
    return c.body(new Uint8Array(encodeDigestList(missing)), 200, {
      "content-type": "application/octet-stream",
      "x-missing-chunks": String(missing.length),
    });
  });

  app.openapi(uploadRoutes.postUploadProbe, async (c) => {
    const { imageId, version } = c.req.valid("param");
    const claims = await authorize(c, imageId, version, "upload");
    const limit = MAX_PROBE_DIGESTS * DIGEST_BYTES;
    if ((contentLength(c) ?? 0) > limit)
      throw invalidField("body", `a probe asks about at most ${MAX_PROBE_DIGESTS} digests`);
    const digests = decodeDigestList(await readBody(c, limit));
    const missing = await store.missingOfProbe(imageId, version, uploadProject(claims), digests);
    return c.body(new Uint8Array(encodeDigestList(missing)), 200, {
      "content-type": "application/octet-stream",
      "x-missing-chunks": String(missing.length),
    });
  });

  app.openapi(uploadRoutes.postUploadChunks, async (c) => {
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
            const wait = writer.backpressure();
            if (wait) await wait;
            // Counted per version: whether another image holds the chunk is not the sender's to know.
            if (writer.accept(record.digest, record.data)) stored++;
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

  app.openapi(uploadRoutes.commitUpload, async (c) => {
    const { imageId, version } = c.req.valid("param");
    const claims = await authorize(c, imageId, version, "upload");
    const record = await store.completeVersion(imageId, version, uploadProject(claims));
    await reporter?.reportReplica(availableReport(record));
    return c.json(record, 200);
  });

  app.openapi(uploadRoutes.putWholeImage, async (c) => {
    const { imageId, version } = c.req.valid("param");
    const { format } = c.req.valid("query");
    const digestHeader = c.req.valid("header")["x-image-digest"];
    const claims = await authorize(c, imageId, version, "upload");
    const declared = contentLength(c);
    if (declared !== undefined) {
      checkImageSize(declared, store.limits);
      checkTicketSize(declared, claims);
    }
    const sent = requestBodySource(c);
    if (!sent) throw invalidField("body", "send the image as the body");
    const body = recorder ? countedSource(sent, (bytes) => recorder.bytesIn("client", bytes)) : sent;
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

  registerPeerRoutes(app, { store, recorder, authorize });
  return app;
}
