// What both HTTP servers (the control plane's and each regional manager's) grant a client:
// a bounded time to send its request head, a request body that keeps making progress, and a
// bounded number of connections. A whole-image PUT on a slow link runs as long as bytes keep
// arriving; a client that sends its headers or part of a body and then stalls is cut.
import type { IncomingMessage, Server, ServerOptions } from "node:http";
import type { Socket } from "node:net";

export interface HttpLimits {
  /** The request line and headers must arrive within this (slow-header clients). */
  headersTimeoutMs: number;
  /** A request body that brings no byte this long is cut (a slow but steady one is not). */
  bodyIdleTimeoutMs: number;
  /** Connections open at once; more are closed as they come. */
  maxConnections: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  headersTimeoutMs: 15_000,
  bodyIdleTimeoutMs: 60_000,
  maxConnections: 1024,
};

/** Options for http.createServer (serve's serverOptions) under `limits`. */
export function httpServerOptions(limits: HttpLimits): ServerOptions {
  return {
    headersTimeout: limits.headersTimeoutMs,
    // No fixed total for a request: a long upload is held to progress instead (below).
    requestTimeout: 0,
    // How often Node checks headersTimeout (30 s by default would let a stalled head linger).
    connectionsCheckingInterval: Math.max(100, Math.min(1_000, limits.headersTimeoutMs / 4)),
  };
}

/**
 * Holds request bodies to progress: a socket quiet for bodyIdleTimeoutMs while its request is
 * still arriving (or before any) is destroyed. One whose request has arrived in full stays, however long its
 * answer takes (a commit hashing a large image, a long-poll).
 */
export function applyHttpLimits(server: Server, limits: HttpLimits): void {
  server.maxConnections = limits.maxConnections;
  const arriving = new WeakMap<Socket, IncomingMessage>();
  server.on("request", (request: IncomingMessage) => arriving.set(request.socket, request));
  server.setTimeout(limits.bodyIdleTimeoutMs, (socket: Socket) => {
    const request = arriving.get(socket);
    if (!request?.complete) socket.destroy();
  });
}
