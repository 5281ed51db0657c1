import { once } from "node:events";
import type { ServerResponse } from "node:http";
import { RESPONSE_ALREADY_SENT } from "@hono/node-server/utils/response";
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { DIGEST_BYTES } from "../../common/image-format/digest.ts";
import {
  type ChunkRef,
  decodeDigestList,
  type Manifest,
  ManifestError,
} from "../../common/image-format/manifest.ts";
import type { TransferAction, TransferClaims } from "../../common/tokens/transfer-token.ts";
import { ImageVersionParams, problemResponses, transferTokenSecurity } from "../http/openapi.ts";
import { invalidField } from "../http/problems.ts";
import type { TransferRecorder } from "../metrics.ts";
import { READ_BUFFER_BYTES } from "../store/chunk-store.ts";
import { StoreError } from "../store/errors.ts";
import { layoutOf } from "../store/image-layout.ts";
import type { ImageStore } from "../store/image-store.ts";
import { diffManifests, encodeManifestDelta } from "../store/manifest-delta.ts";
import { binaryAnswer, binaryBody, readBody } from "./binary-bodies.ts";
import { BufferPool } from "./buffer-pool.ts";
import { chunkPatches } from "./chunk-patches.ts";

/*
 * What a manager serves its peers pulling a version it holds: the manifest (or its delta from
 * a version the peer holds), then the chunks the peer lacks, whole or as patches against a
 * version the peer holds.
 */

const security = transferTokenSecurity;
/** A version of the image the caller holds. */
const BaseQuery = z.coerce.number().int().min(1).optional();
const PeerQuery = z
  .string()
  .regex(/^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/)
  .optional()
  .openapi({ description: "The pulling datacenter's name, for this manager's metrics only" });

export const peerRoutes = {
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
        base: BaseQuery.openapi({
          description: "A version the caller holds, to receive the manifest as a delta from",
        }),
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
        peer: PeerQuery,
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
  postPeerPatches: createRoute({
    operationId: "postPeerPatches",
    method: "post",
    path: "/v1/transfer/{imageId}/versions/{version}/patches",
    tags: ["transfer"],
    summary:
      "Stream the requested chunks of an available version as patches against version `base` (which the caller holds): each chunk's runs of 512-byte blocks that differ from the base's bytes at the chunk's offset",
    security,
    request: {
      params: ImageVersionParams,
      query: z.object({
        // Optional here so that a request without a token is told so first (see the handler).
        base: BaseQuery.openapi({
          description: "A version of the image the caller holds, the patches' base (required)",
        }),
        peer: PeerQuery,
      }),
      body: binaryBody("Concatenated 32-byte digests"),
    },
    responses: {
      200: binaryAnswer(
        "A patch per chunk, in the order asked (see common/image-format/chunk-patch.ts); x-chunk-count tells how many",
      ),
      ...problemResponses(400, 401, 403, 404, 422),
    },
  }),
};

/**
 * The first position of each chunk a peer asks for, in the order asked. Only chunks of this
 * version are served (a read token does not open the whole store), and each once: a list
 * that repeats one would amplify the answer. Looked up in the version's layout (see
 * image-layout.ts), which the store built when the version arrived: no second map of its
 * digests, and repeats are found among the positions, sorted, rather than in a set of strings.
 */
function askedPositions(manifest: Manifest, digests: readonly string[]): Uint32Array {
  const { positions } = layoutOf(manifest);
  const firsts = new Uint32Array(digests.length);
  for (const [i, digest] of digests.entries()) {
    const first = positions.get(digest)?.[0];
    if (first === undefined)
      throw new StoreError("CHUNK_NOT_REFERENCED", `chunk ${digest} is not part of this version`);
    firsts[i] = first;
  }
  const sorted = firsts.slice().sort();
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i] === sorted[i - 1]) {
      const digest = (manifest.chunks[sorted[i] as number] as ChunkRef).digest;
      throw new ManifestError("digests", `chunk ${digest} is asked for twice`);
    }
  }
  return firsts;
}

export interface PeerRouteOptions {
  store: ImageStore;
  recorder?: TransferRecorder | undefined;
  authorize: (
    c: Context,
    imageId: string,
    version: number,
    action: TransferAction,
  ) => Promise<TransferClaims>;
}

export function registerPeerRoutes(app: OpenAPIHono, { store, recorder, authorize }: PeerRouteOptions): void {
  // A sending pull holds at most three: one read ahead, one read, one the socket has yet to take.
  const sendBuffers = new BufferPool(READ_BUFFER_BYTES, 12);

  app.openapi(peerRoutes.getPeerManifest, async (c) => {
    const { imageId, version } = c.req.valid("param");
    const { base } = c.req.valid("query");
    await authorize(c, imageId, version, "read");
    const { record, manifest } = availableVersion(store, imageId, version);
    // The puller's requests for chunks or patches come next: what they are looked up in is
    // built now, while it reads and checks the manifest, rather than on its first request's
    // path (45 ms for 131,000 chunks here, once per version; the store has it already for a
    // version received since it started).
    setImmediate(() => layoutOf(manifest));
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
    return c.body(new Uint8Array(await store.encodedManifest(imageId, version)), 200, headers);
  });

  app.openapi(peerRoutes.postPeerChunks, async (c) => {
    const { imageId, version } = c.req.valid("param");
    const { peer } = c.req.valid("query");
    await authorize(c, imageId, version, "read");
    const { manifest } = availableVersion(store, imageId, version);
    const sent = (bytes: number) => recorder?.bytesOut(peer ?? "unknown", bytes);
    // No request names more than the version's distinct chunks.
    const digests = decodeDigestList(await readBody(c, layoutOf(manifest).positions.size * DIGEST_BYTES));
    let length = 0;
    for (const first of askedPositions(manifest, digests))
      length += (manifest.chunks[first] as ChunkRef).length;
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
    // Not a Node server (tests): the same bytes as a web stream.
    const data = store.chunks.readData(digests, () => Buffer.allocUnsafe(READ_BUFFER_BYTES));
    return c.body(webStream(data, sent), 200, headers);
  });

  app.openapi(peerRoutes.postPeerPatches, async (c) => {
    const { imageId, version } = c.req.valid("param");
    const { base, peer } = c.req.valid("query");
    await authorize(c, imageId, version, "read");
    if (base === undefined) throw invalidField("base", "name the version the patches apply to (?base=N)");
    const { manifest } = availableVersion(store, imageId, version);
    const baseFile = base === version ? undefined : store.versionFile(imageId, base);
    if (!baseFile) {
      throw new StoreError("VERSION_NOT_FOUND", `image ${imageId} version ${base} is not available here`);
    }
    const { offsets, positions } = layoutOf(manifest);
    const digests = decodeDigestList(await readBody(c, positions.size * DIGEST_BYTES));
    const firsts = askedPositions(manifest, digests);
    const chunks = digests.map((digest, i) => {
      const first = firsts[i] as number;
      return {
        digest,
        offset: offsets[first] as number,
        length: (manifest.chunks[first] as ChunkRef).length,
      };
    });
    const sent = (bytes: number) => recorder?.bytesOut(peer ?? "unknown", bytes);
    return c.body(webStream(chunkPatches(store, chunks, baseFile), sent), 200, {
      "content-type": "application/octet-stream",
      "x-chunk-count": String(digests.length),
    });
  });
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

/** Buffers as a web stream, telling `sent` of each as it leaves (tests' callers, and patches). */
function webStream(data: AsyncGenerator<Buffer>, sent: (bytes: number) => void): ReadableStream<Uint8Array> {
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
