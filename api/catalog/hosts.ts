// A datacenter's hosts, as its manager's heartbeats report them: each heartbeat replaces the
// set (one that names none empties it: its manager runs its guests itself).
import { and, asc, eq, gt } from "drizzle-orm";
import type { ReportedHost } from "../../schemas/hosts.ts";
import type { CatalogDb } from "./db.ts";
import { hosts } from "./schema.ts";

/**
 * Replaces the datacenter's hosts by `reported` (none when undefined). Run it in the
 * transaction that updated the datacenter's row: that row's lock orders two heartbeats of one
 * datacenter, so the later one's delete sees the earlier one's rows.
 */
export async function replaceDatacenterHosts(
  tx: CatalogDb,
  datacenter: string,
  reported: readonly ReportedHost[] | undefined,
): Promise<void> {
  await tx.delete(hosts).where(eq(hosts.datacenter, datacenter));
  if (!reported || reported.length === 0) return;
  await tx.insert(hosts).values(
    reported.map((host) => ({
      datacenter,
      name: host.name,
      state: host.state,
      arch: host.arch,
      capacityVcpus: host.capacity.vcpus,
      capacityMemoryMb: host.capacity.memory_mb,
      capacityDiskBytes: host.capacity.disk_bytes,
      freeVcpus: host.free.vcpus,
      freeMemoryMb: host.free.memory_mb,
      freeDiskBytes: host.free.disk_bytes,
      instanceCount: host.instance_count,
      cachedVersions: host.cached_versions,
      cacheBytes: host.cache_bytes,
      lastSeenAt: new Date(host.last_seen_at),
      underlayAddress: host.underlay_address ?? null,
    })),
  );
}

/** One page of a datacenter's hosts by name, after `after`; `limit` rows at most. */
export function datacenterHostsPage(
  db: CatalogDb,
  datacenter: string,
  after: string | undefined,
  limit: number,
) {
  return db
    .select()
    .from(hosts)
    .where(and(eq(hosts.datacenter, datacenter), after ? gt(hosts.name, after) : undefined))
    .orderBy(asc(hosts.name))
    .limit(limit);
}
