// Watches the datacenters' heartbeats from the control plane: when a manager's heartbeats
// stop for the down timeout, its instances turn `unknown`; when it heartbeats again, each of
// them is asked of the manager and recorded as it really is (a manager that was only paused
// has no state change of its own to report). Instances whose reports may have been lost (sent
// while the control plane was restarting) are checked with their manager the same way, and so
// are replicas still said to be on their way.
import { and, eq, isNotNull } from "drizzle-orm";
import {
  datacenterHealth,
  instancesToVerify,
  markInstancesUnknown,
  recordManagerView,
  replicasToVerify,
  unrecordedReplicasOfRunningInstances,
} from "../catalog/datacenter-health.ts";
import { HEARTBEAT_THRESHOLDS } from "../catalog/datacenter-status.ts";
import { instances } from "../catalog/schema.ts";
import type { Services } from "../env.ts";
import { pushFirewall } from "./firewalls.ts";
import { askToReplicate } from "./images/replica-calls.ts";
import { getInstanceOnManager, ManagerCallError } from "./manager-client.ts";

/** An unsettled instance no report touched for this long is checked with its manager. */
export const STALE_AFTER_MS = 10_000;

export interface DatacenterWatchOptions {
  services: Services;
  /** How often the heartbeats are looked at: by default a tenth of the down timeout, at most 5 s. */
  intervalMs?: number;
  log?: (line: string) => void;
}

/** One look: mark the down datacenters' instances unknown, ask the live ones about theirs. */
export async function checkDatacenters(services: Services, log: (line: string) => void): Promise<void> {
  const now = services.now();
  const health = await datacenterHealth(services.db, now);
  const down = health.filter((dc) => dc.status === "down");
  const changed = await markInstancesUnknown(services.db, down, now);
  if (changed > 0) log(`[WARN] ${changed} instance(s) unknown: ${down.map((dc) => dc.name).join(", ")} down`);

  const live = new Map(health.filter((dc) => dc.status === "up" && dc.managerUrl).map((dc) => [dc.name, dc]));
  const staleBefore = new Date(now.getTime() - STALE_AFTER_MS);
  for (const row of await instancesToVerify(services.db, [...live.keys()], staleBefore)) {
    const datacenter = live.get(row.datacenter);
    if (!datacenter?.managerUrl) continue;
    const target = {
      datacenter: datacenter.name,
      managerUrl: datacenter.managerUrl,
      signer: services.instanceTokens,
      timeoutMs: 5_000,
    };
    try {
      const status = await getInstanceOnManager(target, row.id);
      if (status.state === row.state) continue;
      await recordManagerView(
        services.db,
        row,
        { state: status.state, reason: status.reason, guestAttributes: status.guest_attributes },
        services.now(),
      );
    } catch (error) {
      // Not known there (it never got there, or went with a restart): unknown, so the
      // orchestrator's wait asks for it again.
      if (error instanceof ManagerCallError && error.status === 404) {
        if (row.state !== "unknown") {
          const reason = `the manager of ${datacenter.name} does not know it`;
          await recordManagerView(services.db, row, { state: "unknown", reason }, services.now());
        }
        continue;
      }
      log(`[WARN] could not ask ${datacenter.name} about instance ${row.id}: ${error}`);
    }
  }

  // Asking the manager to hold a version is idempotent: one that holds it reports it
  // available again, one that pulls it goes on, one that lost the pull (restarted) pulls again.
  const replicas = [
    ...(await replicasToVerify(services.db, [...live.keys()], staleBefore)),
    ...(await unrecordedReplicasOfRunningInstances(services.db, [...live.keys()])),
  ];
  const asked = new Set<string>();
  for (const replica of replicas) {
    if (replica.version === null) continue;
    const key = `${replica.imageId}@${replica.version}@${replica.datacenter}`;
    if (asked.has(key)) continue;
    asked.add(key);
    try {
      await askToReplicate(services, replica.datacenter, replica.imageId, replica.version);
    } catch (error) {
      log(`[WARN] could not ask ${replica.datacenter} about ${replica.imageId}@${replica.version}: ${error}`);
    }
  }
}

/**
 * The datacenters up now that were not at the last look (all of them at the first look: this
 * process cannot know what they missed before it started).
 */
export function newlyUp(previous: ReadonlySet<string> | undefined, up: readonly string[]): string[] {
  return up.filter((name) => !previous?.has(name));
}

/**
 * A manager that was away while a network's rules changed holds the rules of before: each
 * network with instances in a datacenter that comes back is sent again, to all of its places.
 */
export async function resendFirewalls(services: Services, datacenter: string): Promise<void> {
  const networks = await services.db
    .selectDistinct({ id: instances.networkId })
    .from(instances)
    .where(and(eq(instances.datacenter, datacenter), isNotNull(instances.networkId)));
  for (const network of networks) if (network.id) await pushFirewall(services, network.id);
}

export function startDatacenterWatch(options: DatacenterWatchOptions): { stop(): void } {
  const log = options.log ?? ((line: string) => console.error(line));
  const intervalMs =
    options.intervalMs ?? Math.min(5_000, Math.max(100, HEARTBEAT_THRESHOLDS.downAfterMs / 10));
  let running = false;
  let up: Set<string> | undefined;
  const resendOnReturn = async () => {
    const health = await datacenterHealth(options.services.db, options.services.now());
    const now = health.filter((dc) => dc.status === "up" && dc.managerUrl).map((dc) => dc.name);
    const next = new Set(now);
    for (const name of newlyUp(up, now)) {
      await resendFirewalls(options.services, name).catch((error: unknown) => {
        // Tried again at the next look.
        next.delete(name);
        log(`[WARN] firewalls not sent again to ${name}: ${error}`);
      });
    }
    up = next;
  };
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    checkDatacenters(options.services, log)
      .then(() => resendOnReturn())
      .catch((error: unknown) => log(`[WARN] datacenter watch: ${error}`))
      .finally(() => {
        running = false;
      });
  }, intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
