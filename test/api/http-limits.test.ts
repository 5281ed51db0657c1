// Slow clients (issue #12, Low): both HTTP servers cut a client that sends its head or part of a
// body and stalls, refuse connections past their limit, and still take a slow but steady upload.
import type { Server } from "node:http";
import { connect, type Socket } from "node:net";
import { type ServerType, serve } from "@hono/node-server";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningControlPlane, startControlPlane } from "../../api/server.ts";
import { applyHttpLimits, type HttpLimits, httpServerOptions } from "../../common/http-limits.ts";

const limits: HttpLimits = { headersTimeoutMs: 500, bodyIdleTimeoutMs: 800, maxConnections: 4 };

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => resolve(socket));
    socket.once("error", reject);
  });
}

/** Resolves with how long the server took to close `socket` (and what it sent before). */
function closedAfter(socket: Socket, timeoutMs = 5_000): Promise<{ ms: number; received: string }> {
  const started = Date.now();
  let received = "";
  socket.on("data", (data: Buffer) => {
    received += data.toString();
  });
  socket.on("error", () => {});
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`still open after ${timeoutMs} ms`)), timeoutMs);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve({ ms: Date.now() - started, received });
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("HTTP limits", () => {
  let server: ServerType;
  let port: number;
  beforeAll(async () => {
    const app = new Hono();
    app.put("/upload", async (c) => c.json({ bytes: (await c.req.arrayBuffer()).byteLength }));
    // Answers well after the body arrived: a commit hashing a large image, a long-poll.
    app.post("/slow", async (c) => {
      await c.req.arrayBuffer();
      await sleep(2 * limits.bodyIdleTimeoutMs);
      return c.json({ done: true });
    });
    server = await new Promise<ServerType>((resolve) => {
      const s = serve(
        { fetch: app.fetch, port: 0, hostname: "127.0.0.1", serverOptions: httpServerOptions(limits) },
        () => resolve(s),
      );
    });
    applyHttpLimits(server as Server, limits);
    port = (server.address() as { port: number }).port;
  });
  afterAll(async () => {
    (server as Server).closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it("cuts a client that sends part of its head and stalls", async () => {
    const socket = await open(port);
    socket.write("PUT /upload HTTP/1.1\r\nHost: x\r\n");
    const { ms } = await closedAfter(socket);
    expect(ms).toBeLessThan(3_000);
  });

  it("cuts a client that stalls in the middle of its body", async () => {
    const socket = await open(port);
    socket.write("PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n");
    socket.write("x".repeat(100));
    const { ms, received } = await closedAfter(socket);
    expect(ms).toBeGreaterThanOrEqual(limits.bodyIdleTimeoutMs - 100);
    expect(ms).toBeLessThan(4_000);
    expect(received).toBe("");
  });

  it("takes a slow but steady upload that lasts far longer than the idle timeout", async () => {
    const socket = await open(port);
    const closed = closedAfter(socket, 15_000);
    const pieces = 12;
    socket.write(
      `PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: ${pieces * 100}\r\nConnection: close\r\n\r\n`,
    );
    const started = Date.now();
    for (let i = 0; i < pieces; i++) {
      await sleep(limits.bodyIdleTimeoutMs / 2);
      socket.write("y".repeat(100));
    }
    const { received } = await closed;
    expect(Date.now() - started).toBeGreaterThan(4 * limits.bodyIdleTimeoutMs);
    expect(received).toMatch(/^HTTP\/1\.1 200/);
    expect(received).toContain(`{"bytes":${pieces * 100}}`);
  });

  it("keeps a request whose answer takes longer than the idle timeout", async () => {
    const response = await fetch(`http://127.0.0.1:${port}/slow`, { method: "POST", body: "z" });
    expect(await response.json()).toEqual({ done: true });
  });

  it("closes connections past its limit", async () => {
    const held = await Promise.all(Array.from({ length: limits.maxConnections }, () => open(port)));
    await sleep(50);
    const extra = await open(port);
    const { ms } = await closedAfter(extra);
    expect(ms).toBeLessThan(limits.headersTimeoutMs);
    for (const socket of held) socket.destroy();
  });
});

describe("the control plane's server", () => {
  let controlPlane: RunningControlPlane;
  beforeAll(async () => {
    controlPlane = await startControlPlane({
      catalog: { inMemory: true },
      port: 0,
      orchestrate: false,
      http: { headersTimeoutMs: 500 },
    });
  });
  afterAll(() => controlPlane.close());

  it("cuts a client that sends part of its head and stalls", async () => {
    const socket = await open(controlPlane.port);
    socket.write("GET /v1/regions HTTP/1.1\r\n");
    const { ms } = await closedAfter(socket);
    expect(ms).toBeLessThan(3_000);
  });
});
