// The image operations: keep the replication policy (every region in replicate_to holds the
// current version), distribute a new version to every datacenter holding an older one (only
// its new chunks move: the manager pulls a manifest delta), and remove a deleted image's
// bytes everywhere. Each asks managers and follows the catalog, and can be re-run from the
// top after a crash; the decisions are in ./plans.ts.
import { and, eq } from "drizzle-orm";
import { datacenterStatus } from "../../catalog/datacenter-status.ts";
import { replicaKey, replicasInUse } from "../../catalog/replicas.ts";
import { datacenters, imageReplicas, images, imageVersions } from "../../catalog/schema.ts";
import type { Services } from "../../env.ts";
import { type OperationContext, PermanentError } from "../runner.ts";
import { planDistribution } from "./plans.ts";
import { askManager, askToReplicate, dropReplica } from "./replica-calls.ts";

const TRANSFER_TIMEOUT_MS = 10 * 60_000;
const ASKS_PER_TARGET = 3;

type ReplicaRow = typeof imageReplicas.$inferSelect;
type ImageRow = typeof images.$inferSelect;

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
      // What each pull fetched (its progress is of the whole version, what was held included).
      .map((r) => ({ datacenter: r.datacenter, local_id: r.localId, bytes: r.bytesReceived }))
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
  return { datacenter, local_id: row?.localId ?? null, bytes: row?.bytesReceived ?? 0 };
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

/**
 * Kind `delete-image-version`: the version is `deleted` in the catalog (the route refused while
 * anything ran it, so nothing boots it again); this removes its bytes from every manager that
 * holds or pulls it, then its replica rows. Idempotent: a manager answers a version it lacks at once.
 */
export async function deleteImageVersion(context: OperationContext): Promise<Record<string, unknown>> {
  const { services } = context;
  const imageId = context.operation.targetId;
  const version = Number(context.operation.input.version);
  await context.progress({ step: "removing-replicas" });
  const held = await services.db
    .select()
    .from(imageReplicas)
    .where(and(eq(imageReplicas.imageId, imageId), eq(imageReplicas.version, version)));
  let dropped = 0;
  for (const replica of held) {
    await context.checkCancelled();
    const key = and(
      eq(imageReplicas.imageId, imageId),
      eq(imageReplicas.version, version),
      eq(imageReplicas.datacenter, replica.datacenter),
    );
    // No longer offered as a source to any other pull.
    await services.db.update(imageReplicas).set({ state: "stale", updatedAt: services.now() }).where(key);
    await askManager(services, replica.datacenter, imageId, version, "drop", "?pulls=abort");
    await services.db.delete(imageReplicas).where(key);
    dropped++;
  }
  return { deleted: true, version, replicas_removed: dropped };
}
