// A group's instances on their managers: asked to run (idempotent), removed, and followed —
// the image pulls into their datacenters and the guests' boots — until every one is ready.
// Shared by creating, resizing and replacing; each datacenter's manager is called for its own.
import { and, eq, inArray } from "drizzle-orm";
import { imageReplicas, instances, type vmGroups } from "../catalog/schema.ts";
import { forgetEndpointsIfEmpty } from "../catalog/vm-groups.ts";
import type { Services } from "../env.ts";
import { decideReask, noteReasked, type ReaskLog } from "./instance-recovery.ts";
import { instanceSpecOf } from "./instance-specs.ts";
import {
  deleteInstanceOnManager,
  instanceTargetOf,
  ManagerCallError,
  startInstanceOnManager,
  waitForDatacenter,
} from "./manager-client.ts";
import { type OperationContext, PermanentError } from "./runner.ts";
import { metadataOf } from "./vm-group-metadata.ts";

export const READY_TIMEOUT_MS = 10 * 60_000;

type Group = typeof vmGroups.$inferSelect;
type InstanceRow = typeof instances.$inferSelect;

export async function removeInstance(services: Services, row: InstanceRow) {
  const target = await instanceTargetOf(services, row.datacenter);
  try {
    await deleteInstanceOnManager(target, row.id);
  } catch (error) {
    if (!(error instanceof ManagerCallError && error.status === 404)) throw error;
  }
  await services.db.delete(instances).where(eq(instances.id, row.id));
  await forgetEndpointsIfEmpty(services.db, row.vmGroupId, row.datacenter);
}

/** Asks the instance's manager to run it (idempotent: one it already runs keeps its spec). */
export async function startOnManager(
  services: Services,
  group: Group,
  row: InstanceRow,
  version: number,
  metadata: Record<string, string>,
) {
  const target = await instanceTargetOf(services, row.datacenter);
  await startInstanceOnManager(target, await instanceSpecOf(services, group, row, version, metadata));
}

/** How far the version's pull into each of the datacenters is, summed for the operation. */
async function pullProgress(
  services: Services,
  group: Group,
  version: number,
  datacenters: readonly string[],
) {
  const rows = await services.db
    .select()
    .from(imageReplicas)
    .where(
      and(
        eq(imageReplicas.imageId, group.imageId),
        eq(imageReplicas.version, version),
        inArray(imageReplicas.datacenter, [...datacenters]),
      ),
    );
  const children = datacenters.map((datacenter) => {
    const replica = rows.find((r) => r.datacenter === datacenter);
    return {
      datacenter,
      available: replica?.state === "available",
      bytes_done: replica?.bytesDone ?? 0,
      bytes_total: replica?.bytesTotal ?? null,
    };
  });
  const totals = children.map((c) => c.bytes_total);
  return {
    /** Some datacenter has a replica row: its figures, finished or not, are worth recording. */
    known: rows.length > 0,
    available: children.every((c) => c.available),
    bytes: {
      bytes_done: children.reduce((sum, c) => sum + c.bytes_done, 0),
      bytes_total: totals.every((t) => t !== null) ? totals.reduce((sum, t) => sum + (t ?? 0), 0) : null,
    },
    transferring: children
      .filter((c) => !c.available)
      .map(({ datacenter, bytes_done, bytes_total }) => ({
        datacenter,
        step: "transferring-image",
        bytes_done,
        bytes_total,
      })),
  };
}

/** Follows the image pulls and the boots of the given instances until all are ready. */
export async function waitUntilReady(
  context: OperationContext,
  group: Group,
  version: number,
  ids: readonly string[],
  step: string,
) {
  const { services } = context;
  if (ids.length === 0) return;
  const deadline = Date.now() + READY_TIMEOUT_MS;
  const reasked: ReaskLog = new Map();
  // An instance never changes datacenter: a regional group's span the pulls of several.
  const datacenters = [
    ...new Set(
      (
        await services.db
          .select({ datacenter: instances.datacenter })
          .from(instances)
          .where(inArray(instances.id, ids))
      ).map((r) => r.datacenter),
    ),
  ].sort();
  /** The image was on its way at the last sample: its final figures are recorded once it is here. */
  let transferring = false;
  while (Date.now() < deadline) {
    await context.checkCancelled();
    // Instances of a down datacenter are unknown: wait (bounded) for it to come back.
    for (const datacenter of datacenters) await waitForDatacenter(services, datacenter, context.sleep);
    const current = await services.db.select().from(instances).where(inArray(instances.id, ids));
    if (current.length < ids.length)
      throw new Error(`instances of ${group.name} disappeared while starting; converging again`);
    // Lost by a restarted manager, or failed to get its image: asked again (see instance-recovery.ts).
    const { reask, final: failed } = decideReask(current, reasked, Date.now());
    if (reask.length > 0) {
      const metadata = await metadataOf(services, group);
      for (const row of current.filter((r) => reask.includes(r.id)))
        await startOnManager(services, group, row, row.imageVersion ?? version, metadata);
      noteReasked(reasked, current, reask, Date.now());
    }
    if (failed) {
      throw new PermanentError(
        "instance_failed",
        `instance ${group.name}-${failed.ordinal} (${failed.id}) failed: ${failed.stateReason ?? "no reason given"}`,
      );
    }
    // A replica only ever becomes available, so the step never goes back.
    const pulls = await pullProgress(services, group, version, datacenters);
    if (current.every((r) => r.state === "ready")) {
      // A pull that ended between two samples still leaves its figures on the operation.
      if (transferring && pulls.known) await context.progress({ step, ...pulls.bytes });
      return;
    }
    if (!pulls.available) {
      transferring = true;
      await context.progress({ step: "transferring-image", ...pulls.bytes, children: pulls.transferring });
    } else {
      await context.progress(transferring ? { step, ...pulls.bytes } : { step });
      transferring = false;
    }
    await context.sleep(250);
  }
  throw new PermanentError(
    "ready_timeout",
    `instances of ${group.name} were not ready within ${READY_TIMEOUT_MS / 60_000} minutes`,
  );
}
