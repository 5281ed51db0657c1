/*
 * Request bodies read off the connection into the receiver's memory: the upload's side of the
 * pull's hot path (chunk-stream.ts). Through node:http a request body costs a copy by the
 * parser into a fresh buffer per read, the receiver's copy of it into its own memory, and the
 * garbage collections the fresh buffers bring: measured here, receiving 1 GiB from curl cost
 * 0.6-0.75 s of CPU that way, and 0.30-0.33 s read straight into one reused buffer.
 *
 * Node hands a request's connection over only for a protocol upgrade: a client that asks for
 * `Upgrade: globalvm-connection-body` (CONNECTION_BODY_UPGRADE) has its request answered here,
 * by the same app, over the connection, which then closes. The protocol is not switched: the
 * answer is a plain HTTP/1.1 response, as a server that ignores an upgrade gives. Any other
 * upgrade asked of a manager (a WebSocket, h2c) is answered the same way: none is offered. Only
 * a plain TCP connection is read in place; over TLS the body is copied.
 */
import { type IncomingMessage, type Server, STATUS_CODES } from "node:http";
import { Socket, type SocketConstructorOpts } from "node:net";
import { ProblemError, problemDocument } from "../../common/http/problem.ts";
import type { BodySink, BodySource } from "./body-source.ts";

/** What the app is given, as Hono's `env`, for a request answered over its connection. */
export interface ConnectionBodyEnv {
  connectionBody: ConnectionBody;
}

type Fetch = (request: Request, env: ConnectionBodyEnv) => Response | Promise<Response>;

const SCRATCH_BYTES = 64 * 1024;
/** An answer sent before its request's body ended: this much more of the body is read and dropped. */
const DRAIN_BYTES = 64 << 20;
const DRAIN_MS = 2_000;

/**
 * Answers upgrade requests with `fetch` over their connections (see above). `bodyIdleTimeoutMs`:
 * a body that brings no byte this long is cut, as applyHttpLimits does for other requests.
 */
export function serveConnectionBodies(
  server: Server,
  fetch: Fetch,
  limits: { bodyIdleTimeoutMs: number },
): void {
  server.on("upgrade", (request: IncomingMessage, socket: Socket, head: Buffer) => {
    answerOnConnection(request, socket, head, fetch, limits);
  });
}

function answerOnConnection(
  request: IncomingMessage,
  taken: Socket,
  head: Buffer,
  fetch: Fetch,
  limits: { bodyIdleTimeoutMs: number },
): void {
  const length = Number(request.headers["content-length"] ?? 0);
  if (request.headers["transfer-encoding"] !== undefined || !Number.isSafeInteger(length) || length < 0) {
    const refusal = new ProblemError(
      411,
      "length_required",
      "a request that asks for an upgrade here must announce its body's length (Content-Length)",
    );
    const answer = JSON.stringify(problemDocument(refusal));
    taken.end(
      responseHead(411, { "content-type": "application/problem+json" }, Buffer.byteLength(answer)) + answer,
    );
    return;
  }
  const body = new ConnectionBody(taken, head, length);
  body.socket.setTimeout(limits.bodyIdleTimeoutMs, () => {
    if (!body.ended) body.socket.destroy();
  });
  answer(request, body, fetch).catch(() => body.socket.destroy());
}

async function answer(request: IncomingMessage, body: ConnectionBody, fetch: Fetch): Promise<void> {
  const headers = new Headers();
  for (const [name, value] of Object.entries(request.headers)) {
    if (name === "connection" || name === "upgrade" || value === undefined) continue;
    for (const item of Array.isArray(value) ? value : [value]) headers.append(name, item);
  }
  const url = new URL(request.url ?? "/", `http://${request.headers.host ?? "localhost"}`);
  const method = request.method ?? "GET";
  const response = await fetch(new Request(url, { method, headers }), { connectionBody: body });
  const content = Buffer.from(await response.arrayBuffer());
  const socket = body.socket;
  socket.setTimeout(0);
  if (socket.destroyed) return;
  socket.write(responseHead(response.status, Object.fromEntries(response.headers), content.length));
  const sent = new Promise<void>((resolve) =>
    socket.end(method === "HEAD" ? Buffer.alloc(0) : content, () => resolve()),
  );
  // A refusal sent before the body ended: the rest is read and dropped for a while, so that the
  // client reads the answer rather than a reset connection.
  await Promise.all([sent, body.ended ? undefined : body.drain(DRAIN_BYTES, DRAIN_MS)]);
  socket.destroy();
}

/** An HTTP/1.1 response head whose body is `length` bytes and after which the connection closes. */
function responseHead(status: number, headers: Record<string, string>, length: number): string {
  const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}`];
  for (const [name, value] of Object.entries(headers)) {
    if (name !== "content-length" && name !== "connection" && name !== "transfer-encoding")
      lines.push(`${name}: ${value}`);
  }
  lines.push(`content-length: ${length}`, "connection: close", "", "");
  return lines.join("\r\n");
}

/** A request body of known length, read off its connection: poured into a sink, or iterated. */
export class ConnectionBody implements BodySource, AsyncIterable<Uint8Array> {
  /** The connection, read by this body from now on. */
  readonly socket: Socket;
  private remaining: number;
  private readonly scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
  private sink: BodySink | undefined;
  /** Bytes that came while no sink took them (the request head's read, or iterated bodies). */
  private readonly pending: Buffer[] = [];
  /** The sink's region the next read fills, if it does. */
  private lent: Buffer | undefined;
  private failure: unknown;
  private closed = false;
  private wake: (() => void) | undefined;

  /**
   * Takes the connection of an upgrade request from node:http. Over plain TCP its handle moves
   * to a socket that reads into buffers this body names; the socket node:http knows is closed
   * with it.
   */
  constructor(taken: Socket, head: Buffer, length: number) {
    this.remaining = length;
    taken.setTimeout(0);
    // Internal to node:net, and how Node itself moves a connection between sockets.
    const handle = (taken as unknown as { _handle?: SocketConstructorOpts["handle"] | null })._handle;
    const plain = !("encrypted" in taken) && handle !== null && handle !== undefined;
    if (plain) {
      (taken as unknown as { _handle: unknown })._handle = null;
      taken.removeAllListeners("data");
      this.socket = new Socket({
        handle: handle as SocketConstructorOpts["handle"],
        onread: {
          buffer: () => this.nextBuffer(),
          callback: (bytes: number, buffer: Uint8Array) =>
            this.received(Buffer.from(buffer.buffer, buffer.byteOffset, bytes)),
        },
      });
      // node:http counts the connection until the socket it gave out closes.
      this.socket.once("close", () => taken.destroy());
    } else {
      this.socket = taken;
      taken.on("data", (data: Buffer) => {
        if (!this.received(data)) taken.pause();
      });
    }
    this.socket.on("error", (error) => this.fail(error));
    this.socket.on("close", () => {
      this.closed = true;
      if (this.remaining > 0)
        this.fail(
          new ProblemError(
            400,
            "body_incomplete",
            `the client closed the connection ${this.remaining} bytes before the body's end`,
          ),
        );
    });
    if (head.length > 0) this.received(head);
    if (this.remaining === 0) this.settle();
  }

  get ended(): boolean {
    return this.remaining === 0;
  }

  pour(sink: BodySink): Promise<void> {
    this.sink = sink;
    return new Promise<void>((resolve, reject) => {
      const step = () => {
        try {
          for (;;) {
            if (this.failure !== undefined) return reject(this.failure);
            const wait = sink.backpressure();
            if (wait) {
              wait.then(step, (error: unknown) => {
                this.fail(error);
                reject(error);
              });
              return;
            }
            const piece = this.pending.shift();
            if (!piece) break;
            if (this.copyToSink(piece) === 0 && !sink.backpressure())
              throw new Error("the sink took no bytes and asked for no wait");
          }
          if (this.remaining === 0) return resolve();
          this.wake = step;
          this.socket.resume();
        } catch (error) {
          this.fail(error);
          reject(error);
        }
      };
      step();
    });
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    for (;;) {
      if (this.pending.length > 0) {
        yield this.pending.shift() as Buffer;
        continue;
      }
      if (this.failure !== undefined) throw this.failure;
      if (this.remaining === 0) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        this.socket.resume();
      });
    }
  }

  /** Reads and drops up to `bytes` more of the body, for at most `ms`. */
  async drain(bytes: number, ms: number): Promise<void> {
    let left = bytes;
    const deadline = setTimeout(() => this.socket.destroy(), ms);
    try {
      for await (const piece of this) {
        left -= piece.length;
        if (left <= 0) return;
      }
    } catch {
      // The client went away: nothing more to drop.
    } finally {
      clearTimeout(deadline);
    }
  }

  private nextBuffer(): Buffer {
    this.lent = undefined;
    if (!this.sink || this.pending.length > 0 || this.remaining === 0 || this.failure !== undefined)
      return this.scratch;
    const region = this.sink.region();
    if (region.length === 0) return this.scratch;
    this.lent = region.subarray(0, Math.min(region.length, this.remaining));
    return this.lent;
  }

  /** Every read comes here; returns false to stop reading until the body's reader asks again. */
  private received(input: Buffer): boolean {
    if (this.failure !== undefined || this.remaining === 0) return false;
    try {
      const lent = this.lent;
      if (lent && input.buffer === lent.buffer && input.byteOffset === lent.byteOffset) {
        this.remaining -= input.length;
        (this.sink as BodySink).advance(input.length);
      } else {
        // Bytes past the body's end belong to no request: the connection closes after the answer.
        const data = input.subarray(0, Math.min(input.length, this.remaining));
        this.remaining -= data.length;
        if (this.sink && this.pending.length === 0) this.copyToSink(data);
        else this.pending.push(Buffer.from(data));
      }
      if (this.remaining === 0) {
        this.settle();
        return false;
      }
      if (!this.sink || this.pending.length > 0 || this.sink.backpressure()) {
        this.settle();
        return false;
      }
      return true;
    } catch (error) {
      this.fail(error);
      return false;
    }
  }

  /**
   * Copies bytes that were not read in place where the sink wants them, as far as it has room
   * (the rest waits in `pending`); answers how many it took.
   */
  private copyToSink(data: Buffer): number {
    const sink = this.sink as BodySink;
    let at = 0;
    while (at < data.length) {
      const region = sink.region();
      if (region.length === 0) {
        this.pending.unshift(Buffer.from(data.subarray(at)));
        break;
      }
      const take = Math.min(region.length, data.length - at);
      data.copy(region, 0, at, at + take);
      at += take;
      sink.advance(take);
    }
    return at;
  }

  /** Hands control back to whoever waits for the body (a pour's next step, an iteration). */
  private settle(): void {
    if (!this.closed) this.socket.pause();
    const wake = this.wake;
    this.wake = undefined;
    // Not from within the read callback: a resume there would be undone by the pause after it.
    if (wake) queueMicrotask(wake);
  }

  private fail(error: unknown): void {
    this.failure ??= error;
    this.settle();
  }
}
