// Connecting to a unix socket that a just-started process is still setting up.
import { connect, type Socket } from "node:net";

// The socket file appears at bind(), a moment before listen(): refused or missing is retried.
const RETRIED_CODES = new Set(["ECONNREFUSED", "ENOENT", "EAGAIN"]);

export async function connectUnixSocket(path: string, timeoutMs: number): Promise<Socket> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const socket = connect({ path });
        socket.once("connect", () => {
          socket.off("error", reject);
          resolve(socket);
        });
        socket.once("error", reject);
      });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? "";
      if (!RETRIED_CODES.has(code) || Date.now() > deadline) {
        throw new Error(`cannot connect to ${path}: ${(error as Error).message}`);
      }
      await new Promise((resolveDelay) => setTimeout(resolveDelay, 20));
    }
  }
}
