// One regional manager: the datacenter's chunk store and its transfer endpoints, registered
// with the control plane and kept alive by heartbeats. The control plane asks it to hold an
// image version (POST /v1/replicas/...); it pulls the missing chunks from a peer by itself.
// It runs the control plane's instances (instances/app.ts) through a compute driver, pulling
// an image version first when it lacks it, and reports every state change back.
import { statfs } from "node:fs/promises";
import { availableParallelism, totalmem } from "node:os";
import { join } from "node:path";
import { type ServerType, serve } from "@hono/node-server";
import { Hono } from "hono";
import { TRANSFER_TOKEN_ISSUER } from "../api/signing.ts";
import type { Capacity } from "../schemas/regions.ts";
import { createInstanceTokenVerifier } from "./auth/instance-token.ts";
import { createTransferTokenVerifier } from "./auth/transfer-token.ts";
import { type Accelerator, createComputeDriver, type ProbeGuest } from "./compute/index.ts";
import { ControlPlaneClient } from "./control-plane-client.ts";
import { createInstanceApp } from "./instances/app.ts";
import { InstanceManager } from "./instances/instance-manager.ts";
import { MetadataService } from "./metadata/index.ts";
import { ImageStore, type VersionRecord } from "./store/image-store.ts";
import { createTransferApp } from "./transfer/app.ts";
import { problem, problemFromError, problemResponse } from "./transfer/problems.ts";
import { pullImageVersion } from "./transfer/pull.ts";

export const HEARTBEAT_INTERVAL_MS = 10_000;

export interface RegionalManagerOptions {
  region: string;
  datacenter: string;
  controlPlaneUrl: string;
  credential: string;
  dataDir: string;
  port: number;
  host?: string;
  capacity?: Partial<Capacity>;
  heartbeatIntervalMs?: number;
  log?: (line: string) => void;
  /** Compute driver kind (default "qemu") and its accelerator choice ("auto" probes with probeGuest, else TCG). */
  driver?: string;
  accelerator?: Accelerator | "auto";
  probeGuest?: ProbeGuest;
}

export interface RunningRegionalManager {
  url: string;
  store: ImageStore;
  instances: InstanceManager;
  /** Detaches from running guests (they keep running and are reattached on the next start). */
  close(): Promise<void>;
}

/** Digests travel as `sha256:<hex>` in the catalog and as bare hex in the store. */
export function catalogDigest(hex: string): string {
  return hex.startsWith("sha256:") ? hex : `sha256:${hex}`;
}

export async function startRegionalManager(options: RegionalManagerOptions): Promise<RunningRegionalManager> {
  const log = options.log ?? ((line) => console.error(line));
  const store = await ImageStore.open(join(options.dataDir, "store"));
  const controlPlane = new ControlPlaneClient({
    url: options.controlPlaneUrl,
    credential: options.credential,
    region: options.region,
    datacenter: options.datacenter,
  });
  const reporter = {
    reportReplica: (report: Parameters<ControlPlaneClient["reportReplica"]>[0]) =>
      controlPlane.reportReplica({
        ...report,
        ...(report.digest ? { digest: catalogDigest(report.digest) } : {}),
      }),
  };
  const verifier = createTransferTokenVerifier({
    keys: { jwksUrl: controlPlane.jwksUrl },
    datacenter: options.datacenter,
    issuer: TRANSFER_TOKEN_ISSUER,
  });

  const pulls = new AbortController();
  // One pull per version at a time, shared by replicate requests and instances waiting for it.
  const inFlight = new Map<string, Promise<VersionRecord>>();
  function ensureImageVersion(imageId: string, version: number): Promise<VersionRecord> {
    const held = store.getVersion(imageId, version);
    if (held?.state === "available") return Promise.resolve(held);
    const key = `${imageId}@${version}`;
    let pull = inFlight.get(key);
    if (!pull) {
      pull = replicate(imageId, version).finally(() => inFlight.delete(key));
      inFlight.set(key, pull);
    }
    return pull;
  }

  const capacity = await measureCapacity(options.dataDir, options.capacity);
  const metadata = new MetadataService();
  const driver = createComputeDriver(options.driver ?? "qemu", {
    dataDir: join(options.dataDir, "compute"),
    metadata,
    capacity: { vcpus: capacity.vcpus, memoryMb: capacity.memory_mb },
    accelerator: options.accelerator ?? "auto",
    ...(options.probeGuest ? { probeGuest: options.probeGuest } : {}),
    probeCacheFile: join(options.dataDir, "accelerator-probe.json"),
  });
  const instances = new InstanceManager({
    driver,
    store,
    region: options.region,
    datacenter: options.datacenter,
    ensureImageVersion,
    reporter: controlPlane,
    capacity: { vcpus: capacity.vcpus, memoryMb: capacity.memory_mb },
    log,
  });
  const instanceVerifier = createInstanceTokenVerifier({
    keys: { jwksUrl: controlPlane.jwksUrl },
    datacenter: options.datacenter,
    issuer: TRANSFER_TOKEN_ISSUER,
  });
  const app = new Hono();
  app.get("/healthz", (c) => c.json({ status: "ok", datacenter: options.datacenter }));
  app.route("/", createTransferApp({ store, verifier, reporter }));
  app.route("/", createInstanceApp({ instances, verifier: instanceVerifier, log }));

  // The control plane asks this manager to hold a version; the pull runs in the background
  // and reports progress and the outcome to the catalog.
  app.post("/v1/replicas/:imageId/versions/:version", async (c) => {
    try {
      const imageId = c.req.param("imageId");
      const version = Number(c.req.param("version"));
      if (!Number.isSafeInteger(version) || version < 1) {
        return problemResponse(
          problem(400, "INVALID_PARAMETER", "version must be a positive integer", "version"),
        );
      }
      const header = c.req.header("authorization");
      await verifier.verify(header?.startsWith("Bearer ") ? header.slice(7) : undefined, {
        imageId,
        version,
        action: "replicate",
      });
      const held = store.getVersion(imageId, version);
      if (held?.state === "available") {
        await reporter.reportReplica({
          imageId,
          version,
          state: "available",
          localId: held.localId,
          digest: held.digest,
          size: held.size,
        });
        return c.json({ state: "available", local_id: held.localId }, 200);
      }
      void ensureImageVersion(imageId, version).catch((error: unknown) =>
        log(`[WARN] pull of ${imageId}@${version} failed: ${error}`),
      );
      return c.json({ state: "transferring" }, 202);
    } catch (error) {
      return problemResponse(problemFromError(error));
    }
  });

  async function replicate(imageId: string, version: number): Promise<VersionRecord> {
    const wanted = await controlPlane.sources(imageId, version);
    return pullImageVersion({
      store,
      imageId,
      version,
      expectedDigest: wanted.digest.replace(/^sha256:/, ""),
      expectedSize: wanted.size,
      sources: wanted.sources.map((s) => ({ url: s.url, token: s.token })),
      reporter,
      signal: pulls.signal,
    });
  }

  // Guests a previous manager process left running are taken over and reported.
  const reattached = await instances.reattach();
  if (reattached.length > 0) log(`reattached ${reattached.length} instance(s)`);
  const host = options.host ?? "127.0.0.1";
  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, port: options.port, hostname: host }, () => resolve(s));
  });
  const address = server.address();
  const url = `http://${host}:${typeof address === "object" && address ? address.port : options.port}`;

  await controlPlane.register({ managerUrl: url, capacity });
  const beat = async () => {
    const stats = store.stats();
    const disk = await measureCapacity(options.dataDir, options.capacity);
    const free = instances.free();
    await controlPlane.heartbeat({
      manager_url: url,
      capacity,
      free: { vcpus: free.vcpus, memory_mb: free.memoryMb, disk_bytes: disk.disk_bytes },
      chunk_count: stats.chunkCount,
      image_count: stats.imageCount,
    });
  };
  await beat();
  const heartbeat = setInterval(() => {
    beat().catch((error: unknown) => log(`[WARN] heartbeat failed: ${error}`));
  }, options.heartbeatIntervalMs ?? HEARTBEAT_INTERVAL_MS);

  return {
    url,
    store,
    instances,
    async close() {
      clearInterval(heartbeat);
      pulls.abort();
      await instances.detach();
      await metadata.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      });
      await store.close();
    },
  };
}

/** What the datacenter offers: configured, or this host's cores, memory and the data dir's disk. */
async function measureCapacity(dataDir: string, configured: Partial<Capacity> = {}): Promise<Capacity> {
  const fs = await statfs(dataDir);
  return {
    vcpus: configured.vcpus ?? availableParallelism(),
    memory_mb: configured.memory_mb ?? Math.floor(totalmem() / 2 ** 20),
    disk_bytes: configured.disk_bytes ?? Number(fs.bavail) * Number(fs.bsize),
  };
}
