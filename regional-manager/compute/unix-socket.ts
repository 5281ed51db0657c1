// Connecting to a unix socket that a just-started process is still setting up, and making
// the listening socket a child process inherits.
import { randomBytes } from "node:crypto";
import { renameSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { basename, dirname, join } from "node:path";

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

/** A listening socket bound at `path`, to hand to a child process as its descriptor `fd`. */
export interface ListeningUnixSocket {
  fd: number;
  /** Closes this process's copy; the socket and its path stay for the child that inherited it. */
  close(): void;
}

/**
 * Where a socket is bound before it is moved into place: a short random name beside `path`,
 * never longer than `path` itself, so a path that fits sun_path binds too.
 */
export function bindingPath(path: string): string {
  const name = `.${randomBytes(3).toString("hex")}`;
  return join(dirname(path), name.length < basename(path).length ? name : `.${basename(path)}`);
}

/**
 * Binds and listens at `path` without accepting (the child inherits the descriptor and accepts).
 * Node unlinks a server's path when it closes, so the socket is bound under another name and
 * renamed to `path`: closing this process's copy then unlinks nothing.
 */
export async function listenUnixSocket(path: string): Promise<ListeningUnixSocket> {
  const server = createServer({ pauseOnConnect: true });
  const binding = bindingPath(path);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ path: binding }, () => resolve());
  });
  // A connection accepted here before the child took over would be lost to it: refuse none, keep none.
  server.on("connection", (socket) => socket.destroy());
  try {
    renameSync(binding, path);
  } catch (error) {
    server.close();
    throw error;
  }
  // Node exposes no public descriptor of a listening server; its handle carries it.
  const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
  return { fd, close: () => server.close() };
}
