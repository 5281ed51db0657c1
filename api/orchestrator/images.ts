// What the orchestrator does for images: keep the replication policy (every region in
// replicate_to holds the current version), distribute a new version to every datacenter
// holding an older one (only its new chunks move: the manager pulls a manifest delta),
// collect replicas nobody needs any more, and remove a deleted image's bytes everywhere.
// Decisions are the plain functions planDistribution and collectableReplicas; the rest
// asks managers and follows the catalog, and can be re-run from the top after a crash.
import { and, eq, inArray } from "drizzle-orm";
import { datacenterStatus } from "../catalog/datacenter-status.ts";
import { startOperation } from "../catalog/operations.ts";
import { replicaKey, replicasInUse } from "../catalog/replicas.ts";
import { datacenters, imageReplicas, images, imageVersions, operations } from "../catalog/schema.ts";
import type { Services } from "../env.ts";
import { ManagerCallError, managerOf, requestManager } from "./manager-client.ts";
import { type OperationContext, PermanentError } from "./runner.ts";

/** How long an unused replica outside the policy is kept before it is collected (default 1 h). */
export const DEFAULT_REPLICA_IDLE_SECONDS = 3600;
export const REPLICA_IDLE_ENV = "GLOBALVM_REPLICA_IDLE_SECONDS";
const TRANSFER_TIMEOUT_MS = 10 * 60_000;
const ASKS_PER_TARGET = 3;

type ReplicaRow = typeof imageReplicas.$inferSelect;
type ImageRow = typeof images.$inferSelect;

/** The idle time from the environment, or a clear error naming the variable. */
export function replicaIdleSecondsFrom(env: Record<string, string | undefined>): number {
  const text = env[REPLICA_IDLE_ENV];
  if (text === undefined || text === "") return DEFAULT_REPLICA_IDLE_SECONDS;
  const seconds = Number(text);
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new Error(`${REPLICA_IDLE_ENV} must be a positive number of seconds, not ${JSON.stringify(text)}`);
  }
  return seconds;
}

export interface DatacenterFact {
  name: string;
  region: string;
  up: boolean;
}

export interface ReplicaFact {
  datacenter: string;
  version: number;
  state: string;
  onDemand: boolean;
}

export interface DistributionPlan {
  /** Datacenters to hold the current version; onDemand is false where the policy wants it. */
  pulls: { datacenter: string; onDemand: boolean }[];
  /** Policy regions with no live datacenter to hold it. */
  unplacedRegions: string[];
  /** Copies the policy made in regions it no longer names, that no VM group uses: removed now. */
  drops: { datacenter: string; version: number }[];
  /** Such copies a VM group still uses: left to collection once unused. */
  released: { datacenter: string; version: number }[];
}

/**
 * Where the current version must go: one datacenter of each policy region (one that already
 * holds a version of the image first, so the transfer is a delta), and every datacenter that
 * holds any version of it (an update reaches every holder). Policy copies in regions the
 * policy dropped go, unless in use.
 */
export function planDistribution(input: {
  originRegion: string;
  replicateTo: readonly string[];
  version: number;
  datacenters: readonly DatacenterFact[];
  replicas: readonly ReplicaFact[];
  inUse: (datacenter: string, version: number) => boolean;
}): DistributionPlan {
  const regionOf = new Map(input.datacenters.map((dc) => [dc.name, dc.region]));
  const up = new Set(input.datacenters.filter((dc) => dc.up).map((dc) => dc.name));
  const policy = new Set(input.replicateTo.filter((region) => region !== input.originRegion));
  const current = (dc: string) =>
    input.replicas.find((r) => r.datacenter === dc && r.version === input.version);
  const drops: DistributionPlan["drops"] = [];
  const released: DistributionPlan["released"] = [];
  for (const replica of input.replicas) {
    const region = regionOf.get(replica.datacenter);
    if (replica.onDemand || region === undefined || region === input.originRegion || policy.has(region))
      continue;
    if (!["available", "failed"].includes(replica.state)) continue;
    const at = { datacenter: replica.datacenter, version: replica.version };
    if (input.inUse(replica.datacenter, replica.version)) released.push(at);
    else drops.push(at);
  }
  // An update reaches every holder, except a copy that is going now.
  const going = new Set(drops.map((d) => `${d.datacenter}@${d.version}`));
  const holders = new Set(
    input.replicas
      .filter((r) => r.state === "available" && !going.has(`${r.datacenter}@${r.version}`))
      .map((r) => r.datacenter),
  );
  const targets = new Map<string, boolean>();

  const unplacedRegions: string[] = [];
  for (const region of [...policy].sort()) {
    const inRegion = input.datacenters
      .filter((dc) => dc.region === region)
      .map((dc) => dc.name)
      .sort();
    const chosen =
      inRegion.find((dc) => current(dc) !== undefined) ??
      inRegion.find((dc) => up.has(dc) && holders.has(dc)) ??
      inRegion.find((dc) => up.has(dc));
    if (chosen) targets.set(chosen, false);
    else unplacedRegions.push(region);
  }
  for (const dc of holders) {
    const region = regionOf.get(dc);
    if (region === undefined || targets.has(dc)) continue;
    targets.set(dc, !(policy.has(region) || region === input.originRegion));
  }

  const pulls = [...targets]
    .filter(([dc]) => current(dc)?.state !== "available" && up.has(dc))
    .map(([datacenter, onDemand]) => ({ datacenter, onDemand }))
    .sort((a, b) => a.datacenter.localeCompare(b.datacenter));

  return { pulls, unplacedRegions, drops, released };
}

export interface CollectionCandidate {
  imageId: string;
  version: number;
  datacenter: string;
  region: string;
  state: string;
  lastUsedAt: Date | null;
  updatedAt: Date;
}

/**
 * Replicas to collect: unused for `idleMs`, never one a VM group uses, never the current
 * version in a region the policy names, never a copy in the image's origin region (the
 * origin keeps every version), never the last available copy of a version, and never a
 * datacenter's older version while its newer one is still arriving (it is the delta base).
 * A replica left `stale` by a drop cut short is always finished.
 */
export function collectableReplicas(input: {
  images: ReadonlyMap<
    string,
    { originRegion: string; replicateTo: readonly string[]; currentVersion: number | null }
  >;
  replicas: readonly CollectionCandidate[];
  inUse: ReadonlySet<string>;
  now: Date;
  idleMs: number;
}): CollectionCandidate[] {
  const availableCopies = new Map<string, number>();
  for (const r of input.replicas) {
    if (r.state !== "available") continue;
    const key = `${r.imageId}@${r.version}`;
    availableCopies.set(key, (availableCopies.get(key) ?? 0) + 1);
  }
  const collected: CollectionCandidate[] = [];
  for (const r of input.replicas) {
    const image = input.images.get(r.imageId);
    if (!image || !["available", "failed", "stale"].includes(r.state)) continue;
    if (r.region === image.originRegion) continue;
    if (input.inUse.has(replicaKey(r.imageId, r.version, r.datacenter))) continue;
    // A drop that was cut short (the control plane stopped midway) is finished.
    if (r.state === "stale") {
      collected.push(r);
      continue;
    }
    if (r.version === image.currentVersion && image.replicateTo.includes(r.region)) continue;
    const lastUsed = Math.max(r.lastUsedAt?.getTime() ?? 0, r.updatedAt.getTime());
    if (input.now.getTime() - lastUsed < input.idleMs) continue;
    const newerArriving = input.replicas.some(
      (other) =>
        other.imageId === r.imageId &&
        other.datacenter === r.datacenter &&
        other.version > r.version &&
        ["pending", "transferring"].includes(other.state),
    );
    if (newerArriving) continue;
    const key = `${r.imageId}@${r.version}`;
    if (r.state === "available") {
      const copies = availableCopies.get(key) ?? 0;
      if (copies <= 1) continue;
      availableCopies.set(key, copies - 1);
    }
    collected.push(r);
  }
  return collected;
}

/**
 * Images whose policy is not met and could be: a region of replicate_to (other than the
 * origin) has a live datacenter but no copy of the current version, not even one arriving.
 * A failed pull, or a datacenter that came up after the distribution, ends up here.
 */
export function policyGaps(input: {
  images: readonly {
    id: string;
    originRegion: string;
    replicateTo: readonly string[];
    currentVersion: number | null;
  }[];
  replicas: readonly { imageId: string; version: number; region: string; state: string }[];
  liveRegions: ReadonlySet<string>;
}): string[] {
  const held = new Set(
    input.replicas
      .filter((r) => ["pending", "transferring", "available"].includes(r.state))
      .map((r) => `${r.imageId}@${r.version}@${r.region}`),
  );
  return input.images
    .filter(
      (image) =>
        image.currentVersion !== null &&
        image.replicateTo.some(
          (region) =>
            region !== image.originRegion &&
            input.liveRegions.has(region) &&
            !held.has(`${image.id}@${image.currentVersion}@${region}`),
        ),
    )
    .map((image) => image.id);
}

// ---- managers ---------------------------------------------------------------------------

async function askManager(
  services: Services,
  datacenter: string,
  imageId: string,
  version: number,
  action: "replicate" | "drop",
  query = "",
): Promise<unknown> {
  // Replica work fails at once on a down datacenter: the policy or the collector asks again later.
  const manager = await managerOf(services, datacenter, "fail");
  const { token } = await services.transferTokens.sign({ imageId, version, datacenter, action });
  const answer = await requestManager({
    managerUrl: manager.managerUrl,
    token,
    method: action === "replicate" ? "POST" : "DELETE",
    path: `/v1/replicas/${imageId}/versions/${version}${query}`,
    timeoutMs: 60_000,
    describe: `${datacenter} refused to ${action}`,
  });
  return answer ?? null;
}

/** Has the datacenter's manager pull the version (it reports progress and the outcome itself). */
export function askToReplicate(services: Services, datacenter: string, imageId: string, version: number) {
  return askManager(services, datacenter, imageId, version, "replicate");
}

/**
 * Lets one replica go: no longer offered as a source (stale), removed from the manager
 * (which refuses while an instance boots from it), then its row removed, unless the
 * manager was asked to pull it again meanwhile. Answers whether it went.
 */
export async function dropReplica(
  services: Services,
  at: { imageId: string; version: number; datacenter: string },
): Promise<boolean> {
  const { db, now } = services;
  const key = and(
    eq(imageReplicas.imageId, at.imageId),
    eq(imageReplicas.version, at.version),
    eq(imageReplicas.datacenter, at.datacenter),
  );
  const [marked] = await db
    .update(imageReplicas)
    .set({ state: "stale", updatedAt: now() })
    .where(and(key, inArray(imageReplicas.state, ["available", "failed", "stale"])))
    .returning();
  if (!marked) return false;
  try {
    await askManager(services, at.datacenter, at.imageId, at.version, "drop");
  } catch (error) {
    // Still there: offered again as it was.
    await db
      .update(imageReplicas)
      .set({ state: marked.localId ? "available" : "failed" })
      .where(and(key, eq(imageReplicas.state, "stale")));
    if (error instanceof ManagerCallError && error.status === 409) return false;
    throw error;
  }
  await db.delete(imageReplicas).where(and(key, eq(imageReplicas.state, "stale")));
  return true;
}

// ---- operations -------------------------------------------------------------------------

async function loadImage(services: Services, imageId: string): Promise<ImageRow | undefined> {
  const [row] = await services.db.select().from(images).where(eq(images.id, imageId)).limit(1);
  return row;
}

async function replicasOf(services: Services, imageId: string): Promise<ReplicaRow[]> {
  return services.db.select().from(imageReplicas).where(eq(imageReplicas.imageId, imageId));
}

/**
 * Asks each datacenter to pull the version and follows the replica rows (per-datacenter
 * progress) until all are available. A failed pull is asked again a few times; after that
 * the attempt fails and the runner retries it with backoff.
 */
async function pullAndWait(
  context: OperationContext,
  imageId: string,
  version: number,
  targets: string[],
): Promise<ReplicaRow[]> {
  const { services } = context;
  const asks = new Map<string, number>();
  const ask = async (datacenter: string) => {
    asks.set(datacenter, (asks.get(datacenter) ?? 0) + 1);
    await askToReplicate(services, datacenter, imageId, version);
  };
  for (const datacenter of targets) await ask(datacenter);
  const deadline = Date.now() + TRANSFER_TIMEOUT_MS;
  while (Date.now() < deadline) {
    await context.checkCancelled();
    const rows = (await replicasOf(services, imageId)).filter(
      (r) => r.version === version && targets.includes(r.datacenter),
    );
    const children = targets.map((datacenter) => {
      const row = rows.find((r) => r.datacenter === datacenter);
      const done = row?.state === "available";
      return {
        datacenter,
        step: done ? "done" : "transferring-image",
        bytes_done: row?.bytesDone ?? 0,
        bytes_total: row?.bytesTotal ?? null,
      };
    });
    const totals = children.every((c) => c.bytes_total !== null);
    await context.progress({
      step: "transferring-image",
      bytes_done: children.reduce((sum, c) => sum + c.bytes_done, 0),
      bytes_total: totals ? children.reduce((sum, c) => sum + (c.bytes_total ?? 0), 0) : null,
      children,
    });
    if (rows.length === targets.length && rows.every((r) => r.state === "available")) return rows;
    for (const row of rows) {
      if (row.state !== "failed") continue;
      if ((asks.get(row.datacenter) ?? 0) >= ASKS_PER_TARGET) {
        throw new Error(
          `the pull of ${imageId}@${version} into ${row.datacenter} failed ${ASKS_PER_TARGET} times`,
        );
      }
      await services.db
        .update(imageReplicas)
        .set({ state: "pending", updatedAt: services.now() })
        .where(
          and(
            eq(imageReplicas.imageId, imageId),
            eq(imageReplicas.version, version),
            eq(imageReplicas.datacenter, row.datacenter),
            eq(imageReplicas.state, "failed"),
          ),
        );
      await ask(row.datacenter);
    }
    // A replica that vanished (its image deleted) ends the wait at the next check.
    if ((await loadImage(services, imageId)) === undefined) {
      throw new PermanentError("image_deleted", `image ${imageId} was deleted`);
    }
    await context.sleep(500);
  }
  throw new Error(
    `the pull of ${imageId}@${version} did not finish within ${TRANSFER_TIMEOUT_MS / 60_000} minutes`,
  );
}

/** Records the replica rows a pull will fill, before asking: so they are not taken for on-demand copies. */
async function preparePull(
  services: Services,
  imageId: string,
  version: number,
  datacenter: string,
  onDemand: boolean,
) {
  const at = services.now();
  await services.db
    .insert(imageReplicas)
    .values({ imageId, version, datacenter, state: "pending", onDemand, updatedAt: at })
    .onConflictDoUpdate({
      target: [imageReplicas.imageId, imageReplicas.version, imageReplicas.datacenter],
      // The policy adopts an on-demand copy; it never turns a policy copy into an on-demand one.
      set: { ...(onDemand ? {} : { onDemand: false }), updatedAt: at },
    });
}

/**
 * Kind `distribute-image-version`: after an upload commits a version, and after the
 * replication policy changes. Brings the current version to the policy's regions and to
 * every datacenter holding an older one, and lets go of policy copies the policy dropped.
 */
export async function distributeImage(context: OperationContext): Promise<Record<string, unknown>> {
  const { services } = context;
  const imageId = context.operation.targetId;
  const image = await loadImage(services, imageId);
  if (!image?.currentVersion) return { image_deleted: !image };
  const version = image.currentVersion;
  await context.progress({ step: "planning" });
  const [dcs, replicas, used] = await Promise.all([
    services.db.select().from(datacenters),
    replicasOf(services, imageId),
    replicasInUse(services.db, imageId),
  ]);
  const now = services.now();
  const plan = planDistribution({
    originRegion: image.originRegion,
    replicateTo: image.replicateTo,
    version,
    datacenters: dcs.map((dc) => ({
      name: dc.name,
      region: dc.region,
      up: dc.managerUrl !== null && datacenterStatus(dc.lastHeartbeatAt, now) !== "down",
    })),
    replicas: replicas.map((r) => ({
      datacenter: r.datacenter,
      version: r.version,
      state: r.state,
      onDemand: r.onDemand,
    })),
    inUse: (datacenter, v) => used.has(replicaKey(imageId, v, datacenter)),
  });

  for (const at of plan.released) {
    await services.db
      .update(imageReplicas)
      .set({ onDemand: true, lastUsedAt: now })
      .where(
        and(
          eq(imageReplicas.imageId, imageId),
          eq(imageReplicas.version, at.version),
          eq(imageReplicas.datacenter, at.datacenter),
        ),
      );
  }
  const dropped: string[] = [];
  for (const at of plan.drops) {
    if (await dropReplica(services, { imageId, ...at })) dropped.push(`${at.datacenter}@${at.version}`);
  }
  for (const pull of plan.pulls)
    await preparePull(services, imageId, version, pull.datacenter, pull.onDemand);
  const targets = plan.pulls.map((p) => p.datacenter);
  const rows = targets.length > 0 ? await pullAndWait(context, imageId, version, targets) : [];
  return {
    version,
    pulled: rows
      .map((r) => ({ datacenter: r.datacenter, local_id: r.localId, bytes: r.bytesDone }))
      .sort((a, b) => a.datacenter.localeCompare(b.datacenter)),
    dropped,
    released: plan.released.map((at) => `${at.datacenter}@${at.version}`),
    unplaced_regions: plan.unplacedRegions,
  };
}

/** Kind `replicate-image`: one datacenter asked (POST /v1/images/{id}/replicas) to hold a version. */
export async function replicateImage(context: OperationContext): Promise<Record<string, unknown>> {
  const { services } = context;
  const imageId = context.operation.targetId;
  const { datacenter, version } = context.operation.input as { datacenter: string; version: number };
  const [known] = await services.db
    .select()
    .from(imageVersions)
    .where(and(eq(imageVersions.imageId, imageId), eq(imageVersions.version, version)))
    .limit(1);
  if (!known)
    throw new PermanentError("image_deleted", `image ${imageId} has no version ${version} any more`);
  const [row] = await pullAndWait(context, imageId, version, [datacenter]);
  return { datacenter, local_id: row?.localId ?? null };
}

export interface ImageDeletionInput {
  /** Every (datacenter, version) the catalog recorded, and the datacenters an upload may have reached. */
  replicas: { datacenter: string; version: number }[];
  uploadTargets?: { datacenter: string; version: number }[];
}

/**
 * Kind `delete-image`: the image is gone from the catalog (the route removed it, so no new
 * VM group or pull can start from it); this removes its bytes from every manager, aborting
 * pulls of it still in flight. Idempotent: a manager answers a version it lacks at once.
 */
export async function deleteImage(context: OperationContext): Promise<Record<string, unknown>> {
  const { services } = context;
  const imageId = context.operation.targetId;
  const input = context.operation.input as unknown as ImageDeletionInput;
  const all = [...input.replicas, ...(input.uploadTargets ?? [])];
  const unique = [...new Map(all.map((r) => [`${r.datacenter}@${r.version}`, r])).values()];
  await context.progress({ step: "removing-replicas" });
  let dropped = 0;
  for (const at of unique) {
    await context.checkCancelled();
    const answer = (await askManager(
      services,
      at.datacenter,
      imageId,
      at.version,
      "drop",
      "?pulls=abort",
    )) as {
      dropped?: boolean;
    } | null;
    if (answer?.dropped) dropped++;
  }
  return { deleted: true, replicas_removed: dropped };
}

// ---- collection -------------------------------------------------------------------------

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
        .then(({ dropped, repaired }) => {
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
  async sweep(): Promise<{ dropped: string[]; repaired: string[] }> {
    const { db, now } = this.#services;
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
    return { dropped, repaired: await this.#repairPolicies(imageRows, replicaRows) };
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
