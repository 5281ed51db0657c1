// One regional manager's Prometheus metrics (the README's "Metrics" lists each one). Bytes and
// chunks are counted by the transfer code as they move (it is handed a TransferRecorder);
// guest boots are timed from the compute driver's state events; what the manager holds
// (store bytes, guests by state, metadata long-polls waiting) is read when Prometheus scrapes.
// Every series carries the manager's `datacenter`, so one query sums or splits datacenters.

import { getConnInfo } from "@hono/node-server/conninfo";
import type { Context, MiddlewareHandler } from "hono";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { bearerToken } from "../common/http/bearer.ts";
import { ProblemError, problemDocument, problemResponse } from "../common/http/problem.ts";
import {
  BoundedLabel,
  HttpMetrics,
  metricsPublicFrom,
  metricsResponse,
  sameSecret,
} from "../common/metrics.ts";

/** What moves image bytes here: a client's upload, a pull from a peer, or a peer's pull from here. */
export type TransferVia = "upload" | "pull" | "serve";

/** What the transfer code records; every method is cheap (a counter increment). */
export interface TransferRecorder {
  /** `bytes` of chunk data came in from `peer` (a datacenter, or "client" for an upload). */
  bytesIn(peer: string, bytes: number): void;
  /** `bytes` of chunk data went out to `peer` (a datacenter, or "unknown"). */
  bytesOut(peer: string, bytes: number): void;
  /** Chunks that crossed the network (`received`) or that the store had already (`skipped`). */
  chunks(via: "upload" | "pull", outcome: "received" | "skipped", count: number): void;
  /** A chunk whose data did not match its digest, refused before it was written. */
  verificationFailed(via: "upload" | "pull"): void;
}

/** What the scrape-time gauges read from the running manager. */
export interface ManagerFigures {
  store(): { chunkBytes: number; chunkCount: number; imageCount: number };
  /** Bytes free for the store on its file system. */
  freeBytes(): Promise<number>;
  guests(): readonly { state: string }[];
  waitingLongPolls(): number;
}

/** A guest state change as the compute driver emits it. */
interface StateChange {
  instanceId: string;
  state: string;
  previous: string | undefined;
}

/** Seconds from a guest's start to its ready signal: a small guest under TCG takes tens. */
const BOOT_SECONDS_BUCKETS = [1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600];

/** Peer datacenters named in labels at most: enough for any deployment, a wall for a bad caller. */
const MAX_PEERS = 64;

export class ManagerMetrics implements TransferRecorder {
  readonly registry = new Registry();
  readonly http: HttpMetrics;
  readonly #bytes: Counter<"direction" | "peer">;
  readonly #chunks: Counter<"via" | "outcome">;
  readonly #verificationFailures: Counter<"via">;
  readonly #boots: Counter<"result">;
  readonly #bootSeconds: Histogram<"result">;
  readonly #peers = new BoundedLabel(MAX_PEERS);
  /** Guests between their start and their first ready, failure or stop: one entry per guest. */
  readonly #booting = new Map<string, number>();

  constructor(datacenter: string) {
    this.registry.setDefaultLabels({ datacenter });
    const registers = [this.registry];
    this.http = new HttpMetrics(this.registry, "globalvm");
    this.#bytes = new Counter({
      name: "globalvm_manager_transfer_bytes_total",
      help: "Chunk data bytes moved, by direction (in, out) and peer (a datacenter, client for uploads, unknown).",
      labelNames: ["direction", "peer"],
      registers,
    });
    this.#chunks = new Counter({
      name: "globalvm_manager_chunks_total",
      help: "Distinct chunks of uploads and pulls, by via (upload, pull) and outcome: received over the network, or skipped because the store held them.",
      labelNames: ["via", "outcome"],
      registers,
    });
    this.#verificationFailures = new Counter({
      name: "globalvm_manager_chunk_verification_failures_total",
      help: "Chunks refused because their data did not match their digest, by via (upload, pull).",
      labelNames: ["via"],
      registers,
    });
    this.#boots = new Counter({
      name: "globalvm_manager_guest_boots_total",
      help: "Guest boots that ended, by result: ready, failed, or stopped before ready.",
      labelNames: ["result"],
      registers,
    });
    this.#bootSeconds = new Histogram({
      name: "globalvm_manager_guest_boot_duration_seconds",
      help: "Seconds from a guest's start to the end of its boot, by result.",
      labelNames: ["result"],
      buckets: BOOT_SECONDS_BUCKETS,
      registers,
    });
    for (const via of ["upload", "pull"] as const) {
      this.#verificationFailures.labels({ via }).inc(0);
      for (const outcome of ["received", "skipped"] as const) this.#chunks.labels({ via, outcome }).inc(0);
    }
  }

  bytesIn(peer: string, bytes: number): void {
    this.#bytes.inc({ direction: "in", peer: this.#peers.of(peer) }, bytes);
  }

  bytesOut(peer: string, bytes: number): void {
    this.#bytes.inc({ direction: "out", peer: this.#peers.of(peer) }, bytes);
  }

  chunks(via: "upload" | "pull", outcome: "received" | "skipped", count: number): void {
    if (count > 0) this.#chunks.inc({ via, outcome }, count);
  }

  verificationFailed(via: "upload" | "pull"): void {
    this.#verificationFailures.inc({ via });
  }

  /** Times each guest from `starting` to `ready` (or to failed/stopped before it). */
  guestStateChanged(change: StateChange): void {
    const now = performance.now();
    if (change.state === "starting") {
      this.#booting.set(change.instanceId, now);
      return;
    }
    const started = this.#booting.get(change.instanceId);
    if (started === undefined || change.state === "running") return;
    this.#booting.delete(change.instanceId);
    const result = change.state === "ready" ? "ready" : change.state === "failed" ? "failed" : "stopped";
    this.#boots.inc({ result });
    this.#bootSeconds.observe({ result }, (now - started) / 1000);
  }

  /** The gauges read at scrape time from the running manager. */
  watch(figures: ManagerFigures): void {
    const registers = [this.registry];
    new Gauge({
      name: "globalvm_manager_store_used_bytes",
      help: "Bytes of chunk data the store holds.",
      registers,
      collect() {
        this.set(figures.store().chunkBytes);
      },
    });
    new Gauge({
      name: "globalvm_manager_store_free_bytes",
      help: "Bytes free for the store on its file system (what an unprivileged writer may use).",
      registers,
      async collect() {
        this.set(await figures.freeBytes());
      },
    });
    new Gauge({
      name: "globalvm_manager_store_chunks",
      help: "Distinct chunks the store holds.",
      registers,
      collect() {
        this.set(figures.store().chunkCount);
      },
    });
    new Gauge({
      name: "globalvm_manager_store_images",
      help: "Image versions available in the store.",
      registers,
      collect() {
        this.set(figures.store().imageCount);
      },
    });
    new Gauge({
      name: "globalvm_manager_guests",
      help: "Guests this manager runs, by state (starting, running, ready, stopped, failed).",
      labelNames: ["state"],
      registers,
      collect() {
        const counts = new Map<string, number>();
        for (const guest of figures.guests()) counts.set(guest.state, (counts.get(guest.state) ?? 0) + 1);
        for (const state of ["starting", "running", "ready", "stopped", "failed"]) {
          this.set({ state }, counts.get(state) ?? 0);
        }
      },
    });
    new Gauge({
      name: "globalvm_manager_metadata_long_polls_waiting",
      help: "Guests' metadata requests held open (wait_for_change) until a value changes.",
      registers,
      collect() {
        this.set(figures.waitingLongPolls());
      },
    });
  }
}

/**
 * Who may scrape a manager. The control plane's tokens are not known here, so: `public`
 * opens it; else a configured `token` must come as a bearer token; else only a caller on the
 * loopback interface (the same host, such as a node's Prometheus agent) is answered.
 */
export interface ManagerMetricsAccess {
  token?: string;
  public?: boolean;
}

/** GLOBALVM_MANAGER_METRICS_TOKEN and GLOBALVM_METRICS_PUBLIC, when the options do not say. */
export function managerMetricsAccessFrom(env: NodeJS.ProcessEnv): ManagerMetricsAccess {
  const token = env.GLOBALVM_MANAGER_METRICS_TOKEN?.trim();
  return { ...(token ? { token } : {}), public: metricsPublicFrom(env) };
}

function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === "::1" || address.startsWith("127.") || address.startsWith("::ffff:127.");
}

function refusal(status: 401 | 403, detail: string): Response {
  const code = status === 401 ? "unauthenticated" : "forbidden";
  return problemResponse(problemDocument(new ProblemError(status, code, detail)));
}

/** GET /metrics of a manager, outside its OpenAPI document (as /openapi.json is). */
export function metricsHandler(metrics: ManagerMetrics, access: ManagerMetricsAccess): MiddlewareHandler {
  return async (c: Context) => {
    if (!access.public) {
      if (access.token !== undefined) {
        const given = bearerToken(c.req.header("authorization"));
        if (!given) return refusal(401, "This manager's /metrics needs its metrics token as a bearer token.");
        if (!sameSecret(given, access.token))
          return refusal(403, "The token is not this manager's metrics token.");
      } else {
        let address: string | undefined;
        try {
          address = getConnInfo(c).remote.address;
        } catch {
          address = undefined; // not behind a Node server (app.request in tests): no peer to trust
        }
        if (!isLoopback(address))
          return refusal(403, "Without a metrics token, this manager's /metrics answers the loopback only.");
      }
    }
    return metricsResponse(metrics.registry);
  };
}
