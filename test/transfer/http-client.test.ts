import { writeFile } from "node:fs/promises";
import { createServer as createHttpServer } from "node:http";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { binaryRequest, readAll } from "../../common/binary-http.ts";
import { seededBytes, temporaryDir } from "../support/transfer.ts";

let server: Server | undefined;
const sockets = new Set<Socket>();
afterEach(async () => {
  // The client's pool keeps connections open: close them, or the server never closes.
  for (const socket of sockets) socket.destroy();
  sockets.clear();
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  server = undefined;
});

/**
 * Answers the first request of every connection and keeps it open; a second request on the same
 * connection finds it closed without an answer: what a server's keep-alive timeout does to a
 * pooled connection reused at that moment.
 */
async function closingIdleConnections(): Promise<{ url: string; connections: () => number }> {
  let connections = 0;
  server = createServer((socket: Socket) => {
    sockets.add(socket);
    connections++;
    let requests = 0;
    socket.on("data", (data) => {
      if (!data.includes("\r\n\r\n")) return;
      if (++requests > 1) return void socket.destroy();
      socket.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok");
    });
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}/v1/uploads/img/versions/1/commit`, connections: () => connections };
}

describe("binaryRequest", () => {
  it("sends a request again on a new connection when its pooled one was closed while idle", async () => {
    const { url, connections } = await closingIdleConnections();
    const first = await binaryRequest({ method: "POST", url });
    expect((await readAll(first)).toString()).toBe("ok");
    // Reuses the pooled connection, which the server closes: answered on a new one.
    const second = await binaryRequest({ method: "POST", url, body: Buffer.from("again") });
    expect((await readAll(second)).toString()).toBe("ok");
    expect(connections()).toBe(2);
  });

  it("sends a file's bytes as the body, reporting progress, and fails when the file is shorter than said", async () => {
    const received: Buffer[] = [];
    const http = createHttpServer((req, res) => {
      const pieces: Buffer[] = [];
      req.on("data", (piece: Buffer) => pieces.push(piece));
      req.on("end", () => {
        received.push(Buffer.concat(pieces));
        res.end("done");
      });
      req.on("error", () => {});
    });
    server = http as unknown as Server;
    http.on("connection", (socket) => sockets.add(socket));
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    const { port } = http.address() as { port: number };
    const dir = await temporaryDir("http-file-body");
    try {
      // Several pieces in flight, the last one short.
      const data = seededBytes((5 << 20) + 12_345, 3);
      const path = join(dir.path, "image");
      await writeFile(path, data);
      const sent: number[] = [];
      const answer = await binaryRequest({
        method: "PUT",
        url: `http://127.0.0.1:${port}/image`,
        body: { path, length: data.length, onSent: (bytes) => sent.push(bytes) },
      });
      expect((await readAll(answer)).toString()).toBe("done");
      expect(received[0]?.equals(data)).toBe(true);
      expect(sent.at(-1)).toBe(data.length);
      expect(sent.length).toBe(6);
      await expect(
        binaryRequest({
          method: "PUT",
          url: `http://127.0.0.1:${port}/image`,
          body: { path, length: data.length + 1 },
        }),
      ).rejects.toThrow(/ended at 5255225 bytes, not 5255226/);
    } finally {
      await dir.remove();
    }
  });

  it("does not repeat a request whose fresh connection failed", async () => {
    server = createServer((socket: Socket) => socket.destroy());
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as { port: number };
    await expect(binaryRequest({ method: "POST", url: `http://127.0.0.1:${port}/x` })).rejects.toThrow(
      /socket hang up|ECONNRESET/,
    );
  });
});
