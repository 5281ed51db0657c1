import { createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { binaryRequest, readAll } from "../../common/binary-http.ts";

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

  it("does not repeat a request whose fresh connection failed", async () => {
    server = createServer((socket: Socket) => socket.destroy());
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as { port: number };
    await expect(binaryRequest({ method: "POST", url: `http://127.0.0.1:${port}/x` })).rejects.toThrow(
      /socket hang up|ECONNRESET/,
    );
  });
});
