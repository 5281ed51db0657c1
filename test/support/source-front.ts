// A proxy in front of one source manager, without touching the manager: the manager's
// control-plane connection goes through a proxy that rewrites the manager_url it announces
// (registration and heartbeats) to a second proxy in front of it, so every peer reaches the
// source through that second proxy. What the front does with each request is the caller's
// (test/faults/chunk-counter.ts counts chunks, throttled-source.ts slows them).
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** How the front passes one request on to the source. */
export interface ForwardOptions {
  /** Called before each piece of the response goes out (its byte count): to pace it. */
  pace?: (bytes: number) => Promise<void>;
  /** The response ended: whether all of it went through. */
  onEnd?: (completed: boolean) => void;
}

export type FrontHandler = (
  req: IncomingMessage,
  body: Buffer,
  forward: (options?: ForwardOptions) => void,
) => void;

export interface SourceFront {
  /** The URL to give the source manager as its control plane. */
  controlPlaneUrl: string;
  close(): Promise<void>;
}

/** The pull's chunk request: its image id, or undefined for any other request. */
export function chunkRequestImage(req: IncomingMessage): string | undefined {
  // The puller names itself in the query (?peer=): only the path says what is asked.
  const path = req.url?.split("?")[0];
  const match = req.method === "POST" && path?.match(/^\/v1\/transfer\/([^/]+)\/versions\/\d+\/chunks$/);
  return match ? decodeURIComponent(match[1] as string) : undefined;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of req) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

function listen(server: Server): Promise<string> {
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`),
    ),
  );
}

const PACED_PIECE_BYTES = 16 * 1024;

/** Forwards one request to `base`, with `body` (already read) and the response sent back. */
function forward(
  base: string,
  req: IncomingMessage,
  res: ServerResponse,
  body: Buffer,
  { pace, onEnd }: ForwardOptions = {},
) {
  const headers = { ...req.headers, "content-length": String(body.length) };
  delete headers["transfer-encoding"];
  const upstream = request(new URL(req.url ?? "/", base), { method: req.method, headers }, async (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    if (pace) {
      try {
        for await (const chunk of answer as AsyncIterable<Buffer>) {
          for (let at = 0; at < chunk.length; at += PACED_PIECE_BYTES) {
            const part = chunk.subarray(at, at + PACED_PIECE_BYTES);
            await pace(part.length);
            if (!res.write(part)) await new Promise((resolve) => res.once("drain", resolve));
          }
        }
        res.end();
        onEnd?.(true);
      } catch {
        onEnd?.(false);
        res.destroy();
      }
      return;
    }
    let ended = false;
    answer.on("end", () => {
      ended = true;
    });
    answer.on("close", () => {
      onEnd?.(ended && !answer.errored);
      if (!ended) res.destroy();
    });
    answer.pipe(res);
  });
  upstream.on("error", () => {
    onEnd?.(false);
    if (!res.headersSent) res.writeHead(502).end();
    else res.destroy();
  });
  upstream.end(body);
}

export async function startSourceFront(
  controlPlane: () => string,
  handle: FrontHandler,
): Promise<SourceFront> {
  let sourceUrl = "";
  const front = createServer(async (req, res) => {
    const body = await readBody(req);
    handle(req, body, (options) => forward(sourceUrl, req, res, body, options));
  });
  const frontUrl = await listen(front);

  const announcing = createServer(async (req, res) => {
    let body = await readBody(req);
    const announces =
      (req.method === "PUT" || req.method === "POST") &&
      /^\/v1\/datacenters\/[^/]+(\/heartbeat)?$/.test(req.url ?? "") &&
      body.length > 0;
    if (announces) {
      const parsed = JSON.parse(body.toString()) as { manager_url?: string };
      if (parsed.manager_url) {
        sourceUrl = parsed.manager_url;
        parsed.manager_url = frontUrl;
        body = Buffer.from(JSON.stringify(parsed));
      }
    }
    forward(controlPlane(), req, res, body);
  });
  const announcingUrl = await listen(announcing);

  return {
    controlPlaneUrl: announcingUrl,
    async close() {
      for (const server of [front, announcing]) {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
    },
  };
}
