// One instance's DNS listener: DNS over TCP, the messages answered one after another on each
// connection (a stub resolver sends A and AAAA back to back and matches answers by ID).
import { createServer, type Server, type Socket } from "node:net";
import { DnsStreamFramer, frameMessage } from "./dns.ts";

/** Queries one connection may have waiting before it is read no further until they are answered. */
const MAX_WAITING_PER_CONNECTION = 8;
const IDLE_TIMEOUT_MS = 10_000;

/**
 * A server answering each framed message with `answer` (undefined: the peer is not speaking
 * DNS, and the connection is closed). Closing it closes its connections too.
 */
export function createDnsServer(answer: (message: Buffer) => Promise<Buffer | undefined>): Server {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    const framer = new DnsStreamFramer();
    let waiting = 0;
    let answered: Promise<void> = Promise.resolve();
    socket.setTimeout(IDLE_TIMEOUT_MS, () => socket.destroy());
    socket.on("error", () => socket.destroy());
    socket.on("data", (chunk: Buffer) => {
      let messages: Buffer[];
      try {
        messages = framer.push(chunk);
      } catch {
        socket.destroy();
        return;
      }
      for (const message of messages) {
        waiting += 1;
        if (waiting >= MAX_WAITING_PER_CONNECTION) socket.pause();
        answered = answered.then(async () => {
          const response = await answer(message).catch(() => undefined);
          waiting -= 1;
          if (socket.destroyed) return;
          if (!response) {
            socket.destroy();
            return;
          }
          socket.write(frameMessage(response));
          if (waiting < MAX_WAITING_PER_CONNECTION) socket.resume();
        });
      }
    });
  });
  const close = server.close.bind(server);
  server.close = (callback) => {
    close(callback);
    for (const socket of sockets) socket.destroy();
    return server;
  };
  return server;
}
