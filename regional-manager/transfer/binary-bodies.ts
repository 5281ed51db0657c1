import type { IncomingMessage } from "node:http";
import { z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { ChunkRecordError } from "../../common/image-format/chunk-records.ts";
import { type BodySource, sourceOf } from "./body-source.ts";
import type { ConnectionBodyEnv } from "./connection-body.ts";

/* The transfer routes' bodies are bytes, not JSON: how they are declared and read. */

export const binaryBody = (description: string) => ({
  required: true,
  content: { "application/octet-stream": { schema: z.string().openapi({ format: "binary", description }) } },
});
export const binaryAnswer = (description: string) => ({
  description,
  content: { "application/octet-stream": { schema: z.string().openapi({ format: "binary" }) } },
});

/**
 * The request body as a stream of byte pieces. Under @hono/node-server the Node request is
 * read directly: its web-stream adapter halves the throughput of bulk uploads.
 */
export function requestBody(c: Context): AsyncIterable<Uint8Array> | undefined {
  const connectionBody = (c.env as Partial<ConnectionBodyEnv> | undefined)?.connectionBody;
  if (connectionBody) return connectionBody;
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  // Not destroyed when a handler stops reading early (a body over a limit): the refusal is
  // answered, then the server drains or closes the connection.
  if (incoming && typeof incoming.read === "function" && !incoming.readableEnded)
    return incoming.iterator({ destroyOnReturn: false });
  return c.req.raw.body ?? undefined;
}

/**
 * The request body as a source that puts its bytes where the handler says: read off the
 * connection in place when the client asked for that (connection-body.ts), else copied.
 */
export function requestBodySource(c: Context): BodySource | undefined {
  const connectionBody = (c.env as Partial<ConnectionBodyEnv> | undefined)?.connectionBody;
  if (connectionBody) return connectionBody;
  const pieces = requestBody(c);
  return pieces ? sourceOf(pieces) : undefined;
}

/** The Content-Length the client announced, if any. */
export function contentLength(c: Context): number | undefined {
  const value = Number(c.req.header("content-length"));
  return c.req.header("content-length") !== undefined && Number.isSafeInteger(value) ? value : undefined;
}

/** The whole body, refused past `limit` bytes. */
export async function readBody(c: Context, limit: number): Promise<Buffer> {
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
