/**
 * Serves the transfer sub-app of one regional manager on a loopback port, without the
 * control plane: used by the tests that kill managers and by the benchmark (the full
 * service is `globalvm serve regional-manager`).
 *
 *   node regional-manager/transfer/standalone.ts --data-dir DIR --datacenter DC \
 *     --public-key-file JWK.json [--port N] [--max-image-bytes N ...]
 *
 * The limits are those of `globalvm serve regional-manager` (flags or GLOBALVM_MAX_* variables).
 * Prints `listening <port>` once ready. POST /_test/pull with a JSON body of
 * pullImageVersion's options (without store) runs a pull in this process and prints
 * `progress <bytesDone> <bytesTotal> <bytesReceived>` lines while it runs: the bytes of the
 * version held (what the store had before the pull included) of its size, and the chunk data
 * this pull received.
 */
import "../../common/process-tuning.ts";
import { readFileSync } from "node:fs";
import type { Server } from "node:http";
import { parseArgs } from "node:util";
import { serve } from "@hono/node-server";
import { importJWK, type JWK } from "jose";
import { LIMIT_FLAGS, managerLimits } from "../../cli/manager-limits.ts";
import { httpLimitsFromEnv } from "../../cli/serve.ts";
import { applyHttpLimits, DEFAULT_HTTP_LIMITS, httpServerOptions } from "../../common/http-limits.ts";
import { createTransferTokenVerifier } from "../../common/tokens/transfer-token.ts";
import { managerRoutes } from "../http/openapi.ts";
import { VersionPulls } from "../replicas/pulls.ts";
import { ImageStore } from "../store/image-store.ts";
import { createTransferApp } from "./app.ts";
import { serveConnectionBodies } from "./connection-body.ts";
import { type PullSource, pullImageVersion } from "./pull.ts";

const { values } = parseArgs({
  options: {
    "data-dir": { type: "string" },
    datacenter: { type: "string" },
    "public-key-file": { type: "string" },
    port: { type: "string", default: "0" },
    ...LIMIT_FLAGS,
  },
});
const dataDir = values["data-dir"];
const datacenter = values.datacenter;
const keyFile = values["public-key-file"];
if (!dataDir || !datacenter || !keyFile) {
  console.error("usage: standalone.ts --data-dir DIR --datacenter DC --public-key-file JWK.json [--port N]");
  process.exit(2);
}
const jwk = JSON.parse(readFileSync(keyFile, "utf8")) as JWK;
const publicKey = await importJWK(jwk, jwk.alg ?? (jwk.crv === "Ed25519" ? "EdDSA" : "ES256"));
if (publicKey instanceof Uint8Array) throw new Error("transfer tokens use asymmetric keys");
const store = await ImageStore.open(dataDir, { limits: managerLimits(values, process.env, "") });
const verifier = createTransferTokenVerifier({ keys: { publicKey }, datacenter });

// Failures of a test pull are answered as the manager's problems, by the same error handler.
const app = managerRoutes();
const pulls = new VersionPulls({
  // Every pull here names its sources: see ensure's pull below.
  pull: () => Promise.reject(new Error("a pull needs its sources")),
  held: (imageId, version) => store.getVersion(imageId, version),
});
app.route("/", createTransferApp({ store, verifier }));
app.post("/_test/pull", async (c) => {
  const body = (await c.req.json()) as {
    imageId: string;
    version: number;
    expectedDigest: string;
    expectedSize: number;
    expectedManifestDigest?: string;
    sources: PullSource[];
    attempts?: number;
    batchBytes?: number;
    concurrency?: number;
  };
  {
    let lastPrinted = 0;
    let lastPrintedAt = 0;
    let wireBytes = 0;
    let phases = {};
    // Two requests for one version share one pull, as in the manager (replicas/pulls.ts).
    const record = await pulls.ensure(body.imageId, body.version, (_imageId, _version, signal) =>
      pullImageVersion({
        store,
        ...body,
        signal,
        onProgress: (progress) => {
          wireBytes = progress.wireBytes;
          phases = {
            secondsTransferring: progress.secondsTransferring,
            secondsCompleting: progress.secondsCompleting,
          };
          // At most every 256 KiB and 50 ms: stdout is a pipe, written synchronously, and a
          // line per 256 KiB cost ~10% of a fast pull.
          const now = performance.now();
          const due = progress.bytesDone - lastPrinted >= 256 << 10 && now - lastPrintedAt >= 50;
          if (due || progress.bytesDone === progress.bytesTotal) {
            lastPrinted = progress.bytesDone;
            lastPrintedAt = now;
            process.stdout.write(
              `progress ${progress.bytesDone} ${progress.bytesTotal} ${progress.bytesReceived}\n`,
            );
          }
        },
      }),
    );
    process.stdout.write(`pulled ${body.imageId} ${body.version} wire ${wireBytes}\n`);
    return c.json({ ...record, wireBytes, ...phases });
  }
});
app.get("/_test/stats", (c) => c.json({ ...store.stats(), rss: process.memoryUsage().rss }));

// The HTTP limits of `globalvm serve regional-manager` (GLOBALVM_HTTP_* variables).
const http = { ...DEFAULT_HTTP_LIMITS, ...httpLimitsFromEnv() };
const server = serve(
  {
    fetch: app.fetch,
    hostname: "127.0.0.1",
    port: Number(values.port),
    serverOptions: httpServerOptions(http),
  },
  (info) => {
    process.stdout.write(`listening ${info.port}\n`);
  },
);
applyHttpLimits(server as Server, http);
// Uploads that ask for it are read off their connections (transfer/connection-body.ts).
serveConnectionBodies(server as Server, app.fetch, http);
const stop = () => {
  server.close();
  store.close().finally(() => process.exit(0));
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
