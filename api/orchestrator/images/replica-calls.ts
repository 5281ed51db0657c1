// What the orchestrator asks a datacenter's manager about replicas: pull a version, or drop
// one (a replica's bytes, or a deleted image's).
import { and, eq, inArray } from "drizzle-orm";
import { imageReplicas } from "../../catalog/schema.ts";
import type { Services } from "../../env.ts";
import { ManagerCallError, managerOf, requestManager } from "../manager-client.ts";

export async function askManager(
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
