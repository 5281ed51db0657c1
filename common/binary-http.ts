import { open } from "node:fs/promises";
import {
  type ClientRequest,
  Agent as HttpAgent,
  request as httpRequest,
  type IncomingMessage,
} from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";

/*
 * Bulk chunk traffic goes through node:http rather than fetch: on loopback, undici's fetch
 * streams a response body at about half the rate of node:http (measured while building
 * the benchmark), and every byte of an image crosses this path.
 */
const httpAgent = new HttpAgent({ keepAlive: true });
const httpsAgent = new HttpsAgent({ keepAlive: true });

export interface BinaryRequest {
  method: "GET" | "POST" | "PUT";
  url: string;
  headers?: Record<string, string>;
  /** Either a body in memory or a file's bytes (read again if the request is sent again). */
  body?: Buffer | FileBody;
  signal?: AbortSignal | undefined;
}

/*
 * Asked for by a request whose body the manager should read off the connection into its own
 * memory (regional-manager/transfer/connection-body.ts): Node's HTTP server hands a connection
 * over only for an upgrade. The answer is a plain response and the connection then closes.
 */
export const CONNECTION_BODY_UPGRADE = "globalvm-connection-body";

/** The bytes [0, length) of the file at `path`. */
export interface FileBody {
  path: string;
  length: number;
  /** Told how many bytes were handed to the connection so far, after each piece. */
  onSent?: (bytes: number) => void;
}

/*
 * A file body is read into a few buffers, each reused once the connection has taken it. A
 * read stream allocates a buffer per read instead: sending 1 GiB to a receiver that threw it
 * away took 0.33-0.39 CPU-s of user and 0.65-0.87 s of kernel time that way, against
 * 0.12-0.21 and 0.43-0.73 s with four reused 1 MiB buffers (fresh memory is faulted in and
 * zeroed by the kernel, then collected).
 */
const FILE_PIECE_BYTES = 1 << 20;
const FILE_PIECES_IN_FLIGHT = 4;

/**
 * Sends a request and resolves with the response once its status is 2xx; otherwise throws
 * TransferHttpError. A pooled connection the server closed while it sat idle (its keep-alive
 * timeout, 5 s in Node, racing our reuse) fails before any answer: the request is sent once
 * more on a new connection. Every request here may be repeated (chunks are content-addressed,
 * manifests and commits idempotent).
 */
export async function binaryRequest(options: BinaryRequest): Promise<IncomingMessage> {
  // Each attempt takes another pooled connection, and several may have gone stale together.
  for (let attempt = 1; ; attempt++) {
    try {
      return await sendOnce(options);
    } catch (error) {
      if (!(error instanceof StaleConnectionError) || attempt >= MAX_STALE_RETRIES) throw error;
    }
  }
}

const MAX_STALE_RETRIES = 5;

class StaleConnectionError extends Error {}

function sendOnce(options: BinaryRequest): Promise<IncomingMessage> {
  const url = new URL(options.url);
  const secure = url.protocol === "https:";
  const send = secure ? httpsRequest : httpRequest;
  const { body } = options;
  return new Promise<IncomingMessage>((resolve, reject) => {
    const req = send(
      url,
      {
        method: options.method,
        agent: secure ? httpsAgent : httpAgent,
        headers: {
          ...options.headers,
          ...(body ? { "content-type": "application/octet-stream", "content-length": body.length } : {}),
        },
        ...(options.signal ? { signal: options.signal } : {}),
      },
      (response) => {
        const status = response.statusCode ?? 0;
        if (status >= 200 && status < 300) return resolve(response);
        readAll(response).then((body) => reject(problemError(status, body)), reject);
      },
    );
    req.on("error", (error: NodeJS.ErrnoException) => {
      const stale = req.reusedSocket && (error.code === "ECONNRESET" || error.code === "EPIPE");
      reject(stale ? new StaleConnectionError(error.message, { cause: error }) : error);
    });
    if (body === undefined || Buffer.isBuffer(body)) req.end(body);
    // An error of either side rejects through the request's own error.
    else sendFile(body, req).catch((error: unknown) => req.destroy(error as Error));
  });
}

async function sendFile(body: FileBody, req: ClientRequest): Promise<void> {
  const file = await open(body.path, "r");
  try {
    const pieces = Array.from({ length: FILE_PIECES_IN_FLIGHT }, () =>
      Buffer.allocUnsafeSlow(FILE_PIECE_BYTES),
    );
    const taken: Array<Promise<void> | undefined> = [];
    let sent = 0;
    for (let i = 0; sent < body.length; i = (i + 1) % FILE_PIECES_IN_FLIGHT) {
      await taken[i];
      if (req.destroyed) return;
      const piece = pieces[i] as Buffer;
      const { bytesRead } = await file.read(piece, 0, Math.min(piece.length, body.length - sent), sent);
      if (bytesRead === 0) throw new Error(`${body.path} ended at ${sent} bytes, not ${body.length}`);
      // Called once the connection is done with the piece, or with an error once it is destroyed.
      taken[i] = new Promise<void>((resolve) => req.write(piece.subarray(0, bytesRead), () => resolve()));
      sent += bytesRead;
      body.onSent?.(sent);
    }
    await Promise.all(taken);
    req.end();
  } finally {
    await file.close();
  }
}

export async function readAll(response: IncomingMessage): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for await (const piece of response) pieces.push(piece as Buffer);
  return Buffer.concat(pieces);
}

export function problemError(status: number, body: Buffer): TransferHttpError {
  const text = body.toString("utf8");
  try {
    const problem = JSON.parse(text) as { code?: string; detail?: string };
    return new TransferHttpError(status, problem.code ?? "HTTP_ERROR", problem.detail ?? text);
  } catch {
    return new TransferHttpError(status, "HTTP_ERROR", text.slice(0, 500));
  }
}

/** Error thrown by transfer clients when a manager answers with a problem. */
export class TransferHttpError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, detail: string) {
    super(`${code} (${status}): ${detail}`);
    this.name = "TransferHttpError";
    this.status = status;
    this.code = code;
  }
}
