// Counts the chunks a source manager serves, without touching the manager: the manager's
// control-plane connection goes through a proxy that rewrites the manager_url it announces
// (registration and heartbeats) to a second proxy in front of it. Every peer then reaches the
// source through that second proxy, which records the digests each chunk request asks for
// and whether the response reached its end.
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";

const DIGEST_BYTES = 32;

export interface ChunkRequest {
  imageId: string;
  digests: string[];
  /** The whole response went through (false when the source or the client died mid-stream). */
  completed: boolean;
  at: number;
  endedAt: number | undefined;
}

export interface ChunkCounter {
  /** The URL to give the source manager as its control plane. */
  controlPlaneUrl: string;
  requests: ChunkRequest[];
  /** The digests asked of the source for one image, in order, each request flattened. */
  digestsFor(imageId: string, since?: number): string[];
  close(): Promise<void>;
}

async function readBody(req: import("node:http").IncomingMessage): Promise<Buffer> {
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

/** Forwards one request to `base`, with `body` (already read) and the response piped back. */
function forward(
  base: string,
  req: import("node:http").IncomingMessage,
  res: import("node:http").ServerResponse,
  body: Buffer,
  onEnd?: (completed: boolean) => void,
) {
  const headers = { ...req.headers, "content-length": String(body.length) };
  delete headers["transfer-encoding"];
  const upstream = request(new URL(req.url ?? "/", base), { method: req.method, headers }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers);
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

export async function startChunkCounter(controlPlane: () => string): Promise<ChunkCounter> {
  let sourceUrl = "";
  const requests: ChunkRequest[] = [];

  const front = createServer(async (req, res) => {
    const body = await readBody(req);
    // The puller names itself in the query (?peer=): only the path says what is asked.
    const path = req.url?.split("?")[0];
    const match = req.method === "POST" && path?.match(/^\/v1\/transfer\/([^/]+)\/versions\/\d+\/chunks$/);
    if (!match) return forward(sourceUrl, req, res, body);
    const digests: string[] = [];
    for (let at = 0; at + DIGEST_BYTES <= body.length; at += DIGEST_BYTES) {
      digests.push(body.subarray(at, at + DIGEST_BYTES).toString("hex"));
    }
    const record: ChunkRequest = {
      imageId: decodeURIComponent(match[1] as string),
      digests,
      completed: false,
      at: Date.now(),
      endedAt: undefined,
    };
    requests.push(record);
    forward(sourceUrl, req, res, body, (completed) => {
      record.completed = completed;
      record.endedAt = Date.now();
    });
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
    requests,
    digestsFor(imageId, since = 0) {
      return requests.filter((r) => r.imageId === imageId && r.at >= since).flatMap((r) => r.digests);
    },
    async close() {
      for (const server of [front, announcing]) {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
    },
  };
}
