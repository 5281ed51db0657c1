// Request bodies read off the connection (regional-manager/transfer/connection-body.ts): poured
// into a handler's memory or iterated, refused early, cut short, stalled, and over TLS.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createServer, request as httpRequest, type IncomingMessage, type Server } from "node:http";
import { createServer as createHttpsServer, request as httpsRequest } from "node:https";
import { type AddressInfo, connect } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { Hono } from "hono";
import { afterEach, describe, expect, it } from "vitest";
import { CONNECTION_BODY_UPGRADE } from "../../common/binary-http.ts";
import { ProblemError } from "../../common/http/problem.ts";
import { requestBody, requestBodySource } from "../../regional-manager/transfer/binary-bodies.ts";
import { serveConnectionBodies } from "../../regional-manager/transfer/connection-body.ts";
import { seededBytes, temporaryDir } from "../support/transfer.ts";

const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");

/** What the handlers saw of their bodies, for the tests to inspect. */
interface Seen {
  error?: unknown;
}

/**
 * An app whose routes read their bodies in each way: poured into small regions with waits in
 * between (as a slow disk makes the whole-image upload wait), iterated, or not at all.
 */
function testApp(seen: Seen) {
  const app = new Hono();
  app.onError((error, c) => {
    seen.error = error;
    const status = error instanceof ProblemError ? error.status : 500;
    return c.json({ detail: error.message }, status as 400);
  });
  app.put("/pour", async (c) => {
    const source = requestBodySource(c);
    if (!source) return c.json({ detail: "no body" }, 400);
    const received = Buffer.alloc(Number(c.req.header("content-length")));
    let at = 0;
    let deliveries = 0;
    let waitedAfter = 0;
    let waiting: Promise<void> | undefined;
    await source.pour({
      // Regions of 100,000 bytes at most: reads in place and copies both cross their edges.
      region: () =>
        waiting ? Buffer.alloc(0) : received.subarray(at, Math.min(received.length, at + 100_000)),
      advance: (bytes) => {
        at += bytes;
        deliveries++;
      },
      backpressure: () => {
        // A wait after every seventh delivery.
        if (!waiting && deliveries - waitedAfter >= 7) {
          waitedAfter = deliveries;
          waiting = new Promise<void>((resolve) => setTimeout(resolve, 2)).then(() => {
            waiting = undefined;
          });
        }
        return waiting;
      },
    });
    return c.json({ bytes: at, sha256: sha256(received.subarray(0, at)) });
  });
  app.put("/iterate", async (c) => {
    const hash = createHash("sha256");
    let bytes = 0;
    for await (const piece of requestBody(c) ?? []) {
      hash.update(piece);
      bytes += piece.byteLength;
    }
    return c.json({ bytes, sha256: hash.digest("hex") });
  });
  app.put("/refuse", () => {
    throw new ProblemError(413, "too_large", "refused before its body");
  });
  app.get("/plain", (c) => c.json({ upgraded: c.req.header("upgrade") ?? null }));
  return app;
}

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

async function listen(server: Server, seen: Seen, idleMs = 10_000): Promise<number> {
  const app = testApp(seen);
  // Requests that do not ask for their connection: only GETs here, through the same app.
  server.on("request", async (req, res) => {
    const response = await app.fetch(
      new Request(`http://x${req.url}`, { headers: req.headers as Record<string, string> }),
    );
    res.writeHead(response.status, Object.fromEntries(response.headers));
    res.end(Buffer.from(await response.arrayBuffer()));
  });
  serveConnectionBodies(server, app.fetch, { bodyIdleTimeoutMs: idleMs });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
}

interface Answer {
  status: number;
  headers: IncomingMessage["headers"];
  json: Record<string, unknown>;
}

async function answerOf(response: IncomingMessage): Promise<Answer> {
  const pieces: Buffer[] = [];
  for await (const piece of response) pieces.push(piece as Buffer);
  const text = Buffer.concat(pieces).toString();
  return { status: response.statusCode ?? 0, headers: response.headers, json: JSON.parse(text || "{}") };
}

/** PUTs `body` asking for the connection, as the upload client does; the answer even if the body was cut. */
function putOverConnection(url: string, body: Buffer, options: { tls?: boolean } = {}): Promise<Answer> {
  const send = options.tls ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = send(
      url,
      {
        method: "PUT",
        headers: { connection: "upgrade", upgrade: CONNECTION_BODY_UPGRADE, "content-length": body.length },
        ...(options.tls ? { rejectUnauthorized: false } : {}),
      },
      (response) => {
        answered = true;
        answerOf(response).then(resolve, reject);
      },
    );
    // Writes after an early answer fail once the server closes: the answer is what counts.
    req.on("error", (error) => {
      if (!answered) reject(error);
    });
    for (let at = 0; at < body.length; at += 1 << 20) req.write(body.subarray(at, at + (1 << 20)));
    req.end();
  });
}

describe("request bodies read off the connection", () => {
  it("pours a body into the handler's regions, with waits, byte for byte", async () => {
    const seen: Seen = {};
    const port = await listen(createServer(), seen);
    const body = seededBytes(9 * 1024 * 1024 + 12_345, 3);
    const answer = await putOverConnection(`http://127.0.0.1:${port}/pour`, body);
    expect(answer.status).toBe(200);
    expect(answer.json).toEqual({ bytes: body.length, sha256: sha256(body) });
    expect(answer.headers.connection).toBe("close");
    expect(seen.error).toBeUndefined();
  });

  it("gives routes that iterate their bodies the same bytes", async () => {
    const port = await listen(createServer(), {});
    const body = seededBytes(3 * 1024 * 1024 + 7, 4);
    const answer = await putOverConnection(`http://127.0.0.1:${port}/iterate`, body);
    expect(answer).toMatchObject({ status: 200, json: { bytes: body.length, sha256: sha256(body) } });
  });

  it("answers a request without a body, and leaves requests that do not ask to node:http", async () => {
    const port = await listen(createServer(), {});
    const upgraded = await new Promise<Answer>((resolve, reject) => {
      const req = httpRequest(`http://127.0.0.1:${port}/plain`, {
        headers: { connection: "upgrade", upgrade: "websocket" },
      });
      req.on("response", (response) => answerOf(response).then(resolve, reject));
      req.on("error", reject);
      req.end();
    });
    expect(upgraded).toMatchObject({
      status: 200,
      json: { upgraded: null },
      headers: { connection: "close" },
    });
    const plain = await fetch(`http://127.0.0.1:${port}/plain`);
    expect(await plain.json()).toEqual({ upgraded: null });
    expect(plain.headers.get("connection")).not.toBe("close");
  });

  it("delivers an answer given before the body, rather than a reset connection", async () => {
    const port = await listen(createServer(), {});
    const answer = await putOverConnection(`http://127.0.0.1:${port}/refuse`, seededBytes(16 << 20, 5));
    expect(answer).toMatchObject({ status: 413, json: { detail: "refused before its body" } });
  });

  it("refuses a body of unannounced length (411)", async () => {
    const port = await listen(createServer(), {});
    const socket = connect(port, "127.0.0.1");
    let received = "";
    socket.on("data", (data: Buffer) => {
      received += data.toString();
    });
    socket.write(
      `PUT /pour HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: ${CONNECTION_BODY_UPGRADE}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
    );
    await new Promise((resolve) => socket.once("close", resolve));
    expect(received).toMatch(/^HTTP\/1\.1 411 /);
    expect(received).toMatch(/"code":"length_required".*Content-Length/);
  });

  it("fails the handler's read when the client leaves mid-body, and releases the connection", async () => {
    const seen: Seen = {};
    const server = createServer();
    const port = await listen(server, seen);
    const socket = connect(port, "127.0.0.1");
    await new Promise((resolve) => socket.once("connect", resolve));
    socket.write(
      `PUT /pour HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: ${CONNECTION_BODY_UPGRADE}\r\nContent-Length: 1048576\r\n\r\n`,
    );
    socket.write(Buffer.alloc(300_000, 1));
    await expect.poll(() => server.listenerCount("upgrade")).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    socket.destroy();
    await expect
      .poll(() => (seen.error as Error | undefined)?.message, { timeout: 5_000 })
      .toMatch(/closed the connection 748576 bytes before the body's end/);
    await expect
      .poll(() => new Promise((resolve) => server.getConnections((_, count) => resolve(count))), {
        timeout: 5_000,
      })
      .toBe(0);
  });

  it("cuts a body that stalls for the idle timeout", async () => {
    const seen: Seen = {};
    const port = await listen(createServer(), seen, 300);
    const socket = connect(port, "127.0.0.1");
    await new Promise((resolve) => socket.once("connect", resolve));
    const started = Date.now();
    socket.write(
      `PUT /pour HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: ${CONNECTION_BODY_UPGRADE}\r\nContent-Length: 1048576\r\n\r\n`,
    );
    socket.write(Buffer.alloc(64 * 1024, 1));
    await new Promise((resolve) => socket.once("close", resolve));
    expect(Date.now() - started).toBeLessThan(3_000);
    await expect.poll(() => (seen.error as Error | undefined)?.message).toMatch(/before the body's end/);
  });

  it("copies the body over TLS, where the connection cannot be read in place", async () => {
    const dir = await temporaryDir("tls-body");
    try {
      const [key, cert] = [join(dir.path, "key.pem"), join(dir.path, "cert.pem")];
      await promisify(execFile)("openssl", [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key,
        "-out",
        cert,
        "-subj",
        "/CN=localhost",
        "-days",
        "1",
      ]);
      const server = createHttpsServer({ key: await readFile(key), cert: await readFile(cert) });
      const port = await listen(server, {});
      const body = seededBytes(5 * 1024 * 1024 + 3, 6);
      for (const route of ["pour", "iterate"]) {
        const answer = await putOverConnection(`https://127.0.0.1:${port}/${route}`, body, { tls: true });
        expect(answer).toMatchObject({ status: 200, json: { bytes: body.length, sha256: sha256(body) } });
      }
    } finally {
      await dir.remove();
    }
  });
});
