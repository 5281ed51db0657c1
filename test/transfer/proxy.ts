import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * An HTTP proxy between two managers that counts the bytes on the wire and can throttle
 * them (so a test can kill a process mid-transfer) or flip a byte (corruption in transit).
 */
export interface TransferProxy {
  url: string;
  /** Response bytes sent to clients since the last reset. */
  bytes: number;
  /** Chunk requests (POST .../chunks) since the last reset. */
  chunkRequests: number;
  target: string;
  /** Patch requests (POST .../patches) since the last reset. */
  patchRequests: number;
  /** Called with the index of each chunk response; returns a body offset to corrupt, if any. */
  corrupt: ((responseIndex: number) => number | undefined) | undefined;
  /** The same for patch responses. */
  corruptPatches: ((responseIndex: number) => number | undefined) | undefined;
  /** Paths answered 404 without asking the target (a source that predates a route). */
  refuse: ((path: string) => boolean) | undefined;
  bytesPerSecond: number | undefined;
  reset(): void;
  close(): Promise<void>;
}

export async function startProxy(target: string): Promise<TransferProxy> {
  const state: TransferProxy = {
    url: "",
    bytes: 0,
    chunkRequests: 0,
    patchRequests: 0,
    target,
    corrupt: undefined,
    corruptPatches: undefined,
    refuse: undefined,
    bytesPerSecond: undefined,
    reset() {
      state.bytes = 0;
      state.chunkRequests = 0;
      state.patchRequests = 0;
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
  const server = createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0] ?? "";
    if (state.refuse?.(path)) {
      req.resume();
      res.writeHead(404, { "content-type": "application/problem+json" });
      res.end(JSON.stringify({ code: "not_found", detail: `${path} is not served here` }));
      return;
    }
    const isChunks = req.method === "POST" && path.endsWith("/chunks");
    const isPatches = req.method === "POST" && path.endsWith("/patches");
    const corruptAt = isChunks
      ? state.corrupt?.(state.chunkRequests)
      : isPatches
        ? state.corruptPatches?.(state.patchRequests)
        : undefined;
    if (isChunks) state.chunkRequests++;
    if (isPatches) state.patchRequests++;
    const upstream = request(
      new URL(req.url ?? "/", state.target),
      { method: req.method, headers: req.headers },
      async (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        let offset = 0;
        const started = performance.now();
        answer.on("error", () => res.destroy());
        answer.on("aborted", () => res.destroy());
        try {
          for await (const piece of answer) {
            const data = piece as Buffer;
            if (corruptAt !== undefined && corruptAt >= offset && corruptAt < offset + data.length) {
              data[corruptAt - offset] = (data[corruptAt - offset] as number) ^ 0x5a;
            }
            offset += data.length;
            state.bytes += data.length;
            if (!res.write(data)) await new Promise((resolve) => res.once("drain", resolve));
            if (state.bytesPerSecond) {
              const due = (offset / state.bytesPerSecond) * 1000 - (performance.now() - started);
              if (due > 0) await new Promise((resolve) => setTimeout(resolve, due));
            }
          }
          if (!answer.complete) res.destroy();
          else res.end();
        } catch {
          res.destroy();
        }
      },
    );
    upstream.on("error", () => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return state;
}
