// The control plane's Prometheus metrics (the README's "Metrics" lists each one). Events are
// counted where they happen (the operation runner, the HTTP middleware); what the catalog
// already knows (operations waiting, instances by state, heartbeat ages) is read from it when
// Prometheus scrapes, so no counter can drift from the record, and several control planes on
// one database each answer the same truth.

import { count, inArray, max, min } from "drizzle-orm";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { HttpMetrics, memoized } from "../common/metrics.ts";
import { OPERATION_KINDS } from "../schemas/operations.ts";
import type { CatalogDb } from "./catalog/db.ts";
import { datacenters, instances, operations } from "./catalog/schema.ts";

/** Seconds, for an operation from its creation to its end: a delete in a second to a long pull. */
const OPERATION_SECONDS_BUCKETS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];

/** A scrape's catalog reads are shared by its gauges and by scrapes less than this apart. */
const CATALOG_READ_TTL_MS = 1000;

export type OperationResult = "succeeded" | "failed" | "cancelled";

interface CatalogFigures {
  operations: { kind: string; state: string; count: number; oldest: Date | null }[];
  instances: { datacenter: string; state: string; count: number }[];
  heartbeats: { datacenter: string; region: string; at: Date | null }[];
}

/** One control plane's registry and the metrics recorded into it. */
export class ControlPlaneMetrics {
  readonly registry = new Registry();
  readonly http = new HttpMetrics(this.registry, "globalvm");
  readonly #operationsStarted: Counter<"kind">;
  readonly #operationsFinished: Counter<"kind" | "result">;
  readonly #operationSeconds: Histogram<"kind" | "result">;
  readonly #operationRetries: Counter<"kind">;

  constructor(db: CatalogDb, now: () => Date) {
    const registers = [this.registry];
    this.#operationsStarted = new Counter({
      name: "globalvm_operations_started_total",
      help: "Operations whose first attempt this control plane began, by kind.",
      labelNames: ["kind"],
      registers,
    });
    this.#operationsFinished = new Counter({
      name: "globalvm_operations_finished_total",
      help: "Operations this control plane ended, by kind and result (succeeded, failed, cancelled).",
      labelNames: ["kind", "result"],
      registers,
    });
    this.#operationSeconds = new Histogram({
      name: "globalvm_operation_duration_seconds",
      help: "Seconds from an operation's creation (the API call) to its end, by kind and result.",
      labelNames: ["kind", "result"],
      buckets: OPERATION_SECONDS_BUCKETS,
      registers,
    });
    this.#operationRetries = new Counter({
      name: "globalvm_operation_retries_total",
      help: "Failed attempts of operations that will be tried again after a backoff, by kind.",
      labelNames: ["kind"],
      registers,
    });
    // Every kind shows from the first scrape, so rate() and absent() work before the first one.
    for (const kind of OPERATION_KINDS) this.#operationsStarted.labels({ kind }).inc(0);

    const figures = memoized(() => readCatalogFigures(db), CATALOG_READ_TTL_MS);
    new Gauge({
      name: "globalvm_operations_waiting",
      help: "Operations recorded but not yet claimed by a worker (the queue's depth), by kind.",
      labelNames: ["kind"],
      registers,
      async collect() {
        const rows = (await figures()).operations;
        for (const kind of OPERATION_KINDS) this.set({ kind }, sumOf(rows, kind, "pending"));
      },
    });
    new Gauge({
      name: "globalvm_operations_running",
      help: "Operations a worker claimed that have not ended (retrying ones included), by kind.",
      labelNames: ["kind"],
      registers,
      async collect() {
        const rows = (await figures()).operations;
        for (const kind of OPERATION_KINDS) this.set({ kind }, sumOf(rows, kind, "running"));
      },
    });
    new Gauge({
      name: "globalvm_operation_oldest_waiting_seconds",
      help: "Age of the oldest operation not yet claimed by a worker, by kind (0 when none waits).",
      labelNames: ["kind"],
      registers,
      async collect() {
        const rows = (await figures()).operations;
        const at = now().getTime();
        for (const kind of OPERATION_KINDS) {
          const oldest = rows.find((r) => r.kind === kind && r.state === "pending")?.oldest;
          this.set({ kind }, oldest ? Math.max(0, (at - oldest.getTime()) / 1000) : 0);
        }
      },
    });
    new Gauge({
      name: "globalvm_datacenter_heartbeat_age_seconds",
      help: "Seconds since each registered datacenter's manager last sent a heartbeat (none yet: absent).",
      labelNames: ["region", "datacenter"],
      registers,
      async collect() {
        this.reset(); // a datacenter removed from the catalog leaves no stale series
        const at = now().getTime();
        for (const row of (await figures()).heartbeats) {
          if (!row.at) continue;
          this.set(
            { region: row.region, datacenter: row.datacenter },
            Math.max(0, (at - row.at.getTime()) / 1000),
          );
        }
      },
    });
    new Gauge({
      name: "globalvm_instances",
      help: "Instances in the catalog, by datacenter and state.",
      labelNames: ["datacenter", "state"],
      registers,
      async collect() {
        this.reset();
        for (const row of (await figures()).instances) {
          this.set({ datacenter: row.datacenter, state: row.state }, row.count);
        }
      },
    });
  }

  operationStarted(kind: string): void {
    this.#operationsStarted.inc({ kind });
  }

  operationRetrying(kind: string): void {
    this.#operationRetries.inc({ kind });
  }

  /** An operation ended; `createdAt` is its record's, so the duration includes its wait in the queue. */
  operationFinished(kind: string, result: OperationResult, createdAt: Date, endedAt: Date): void {
    this.#operationsFinished.inc({ kind, result });
    this.#operationSeconds.observe(
      { kind, result },
      Math.max(0, (endedAt.getTime() - createdAt.getTime()) / 1000),
    );
  }
}

function sumOf(rows: CatalogFigures["operations"], kind: string, state: string): number {
  return rows.find((r) => r.kind === kind && r.state === state)?.count ?? 0;
}

/**
 * Three aggregate reads, whose answers have as many rows as kinds × states, datacenters ×
 * states and datacenters: a scrape costs the same however many objects the catalog holds
 * beyond the scan itself.
 */
async function readCatalogFigures(db: CatalogDb): Promise<CatalogFigures> {
  const [ops, insts, dcs] = await Promise.all([
    db
      .select({
        kind: operations.kind,
        state: operations.state,
        count: count(),
        oldest: min(operations.createdAt),
      })
      .from(operations)
      .where(inArray(operations.state, ["pending", "running"]))
      .groupBy(operations.kind, operations.state),
    db
      .select({ datacenter: instances.datacenter, state: instances.state, count: count() })
      .from(instances)
      .groupBy(instances.datacenter, instances.state),
    db
      .select({
        datacenter: datacenters.name,
        region: datacenters.region,
        at: max(datacenters.lastHeartbeatAt),
      })
      .from(datacenters)
      .groupBy(datacenters.name, datacenters.region),
  ]);
  return {
    operations: ops.map((r) => ({ ...r, oldest: asDate(r.oldest) })),
    instances: insts,
    heartbeats: dcs.map((r) => ({ ...r, at: asDate(r.at) })),
  };
}

/** min()/max() of a timestamp column come back as the column maps them, or as text from some drivers. */
function asDate(value: Date | string | null): Date | null {
  if (value === null) return null;
  return value instanceof Date ? value : new Date(value);
}
