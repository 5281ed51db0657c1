// Collection of replicas nobody needs, the replication policy's periodic check, and version
// states whose scheduled time came.
import { and, eq, inArray } from "drizzle-orm";
import { datacenterStatus } from "../../catalog/datacenter-status.ts";
import { startOperation } from "../../catalog/operations.ts";
import { replicaKey, replicasInUse } from "../../catalog/replicas.ts";
import { datacenters, imageReplicas, images, operations } from "../../catalog/schema.ts";
import type { Services } from "../../env.ts";
import { applyScheduledVersionStates } from "./current-version.ts";
import { collectableReplicas, policyGaps } from "./plans.ts";
import { dropReplica } from "./replica-calls.ts";

type ReplicaRow = typeof imageReplicas.$inferSelect;

/**
 * Collects replicas nobody needs (see collectableReplicas), sweeping every quarter of the
 * idle time (between 1 s and 1 min). Each sweep first stamps the replicas in use, so idle
 * time counts from the last sweep that saw them used. Two control planes sweeping at once
 * is harmless: a drop is conditional on the replica's state and the manager's refusal.
 */
export class ReplicaCollector {
  readonly #services: Services;
  readonly #idleMs: number;
  readonly #log: (line: string) => void;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;

  constructor(services: Services, options: { idleSeconds: number; log?: (line: string) => void }) {
    this.#services = services;
    this.#idleMs = options.idleSeconds * 1000;
    this.#log = options.log ?? ((line) => console.error(line));
  }

  get intervalMs(): number {
    return Math.min(60_000, Math.max(1000, this.#idleMs / 4));
  }

  start() {
    const tick = () => {
      this.#running = this.sweep()
        .then(({ dropped, repaired, scheduled }) => {
          if (scheduled.length > 0)
            this.#log(`applied scheduled version states of images: ${scheduled.join(", ")}`);
          if (dropped.length > 0) this.#log(`collected unused replicas: ${dropped.join(", ")}`);
          if (repaired.length > 0)
            this.#log(`replicating again to meet the policy of: ${repaired.join(", ")}`);
        })
        .catch((error: unknown) => this.#log(`[WARN] replica collection failed: ${error}`))
        .finally(() => {
          if (!this.#stopped) this.#timer = setTimeout(tick, this.intervalMs);
        });
    };
    this.#timer = setTimeout(tick, this.intervalMs);
  }

  async stop() {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }

  /**
   * One pass: answers the replicas dropped (as image@version@datacenter) and the images whose
   * policy was not met, for which a distribution was started.
   */
  async sweep(): Promise<{ dropped: string[]; repaired: string[]; scheduled: string[] }> {
    const { db, now } = this.#services;
    // Deprecations and obsolescences whose time came: followers roll before replicas are weighed.
    const scheduled = await applyScheduledVersionStates(this.#services);
    const [imageRows, replicaRows, used] = await Promise.all([
      db
        .select({
          id: images.id,
          projectId: images.projectId,
          originRegion: images.originRegion,
          replicateTo: images.replicateTo,
          currentVersion: images.currentVersion,
        })
        .from(images),
      db
        .select({ replica: imageReplicas, region: datacenters.region })
        .from(imageReplicas)
        .innerJoin(datacenters, eq(datacenters.name, imageReplicas.datacenter)),
      replicasInUse(db),
    ]);
    const at = now();
    for (const { replica } of replicaRows) {
      if (!used.has(replicaKey(replica.imageId, replica.version, replica.datacenter))) continue;
      await db
        .update(imageReplicas)
        .set({ lastUsedAt: at })
        .where(
          and(
            eq(imageReplicas.imageId, replica.imageId),
            eq(imageReplicas.version, replica.version),
            eq(imageReplicas.datacenter, replica.datacenter),
          ),
        );
    }
    const candidates = collectableReplicas({
      images: new Map(imageRows.map((row) => [row.id, row])),
      replicas: replicaRows.map(({ replica, region }) => ({
        imageId: replica.imageId,
        version: replica.version,
        datacenter: replica.datacenter,
        region,
        state: replica.state,
        lastUsedAt: replica.lastUsedAt,
        updatedAt: replica.updatedAt,
      })),
      inUse: new Set(used.keys()),
      now: at,
      idleMs: this.#idleMs,
    });
    const dropped: string[] = [];
    for (const candidate of candidates) {
      try {
        if (await dropReplica(this.#services, candidate)) {
          dropped.push(replicaKey(candidate.imageId, candidate.version, candidate.datacenter));
        }
      } catch (error) {
        // A manager down now is asked again at the next sweep.
        this.#log(
          `[INFO] could not collect ${candidate.imageId}@${candidate.version} in ${candidate.datacenter}: ${error}`,
        );
      }
    }
    return { dropped, repaired: await this.#repairPolicies(imageRows, replicaRows), scheduled };
  }

  /** Starts a distribution for each image whose policy a live region does not meet, unless one runs. */
  async #repairPolicies(
    imageRows: {
      id: string;
      projectId: string;
      originRegion: string;
      replicateTo: string[];
      currentVersion: number | null;
    }[],
    replicaRows: { replica: ReplicaRow; region: string }[],
  ): Promise<string[]> {
    const { db, now } = this.#services;
    const at = now();
    const live = (await db.select().from(datacenters)).filter(
      (dc) => dc.managerUrl !== null && datacenterStatus(dc.lastHeartbeatAt, at) === "up",
    );
    const gaps = policyGaps({
      images: imageRows,
      replicas: replicaRows.map(({ replica, region }) => ({ ...replica, region })),
      liveRegions: new Set(live.map((dc) => dc.region)),
    });
    if (gaps.length === 0) return [];
    const running = new Set(
      (
        await db
          .select({ targetId: operations.targetId })
          .from(operations)
          .where(
            and(
              eq(operations.kind, "distribute-image-version"),
              inArray(operations.state, ["pending", "running"]),
              inArray(operations.targetId, gaps),
            ),
          )
      ).map((op) => op.targetId),
    );
    const repaired: string[] = [];
    for (const image of imageRows) {
      if (!gaps.includes(image.id) || running.has(image.id)) continue;
      await startOperation(db, this.#services, {
        projectId: image.projectId,
        kind: "distribute-image-version",
        target: { type: "image", id: image.id },
        input: { version: image.currentVersion, reason: "policy-unmet" },
      });
      repaired.push(image.id);
    }
    return repaired;
  }
}
