// The image decisions, as plain functions of catalog facts: where a version goes
// (planDistribution), which replicas are collected (collectableReplicas), which images miss
// their replication policy (policyGaps). The handlers (./handlers.ts) and the collector
// (./collector.ts) load the facts and act on the answers.
import { replicaKey } from "../../catalog/replicas.ts";

/** How long an unused replica outside the policy is kept before it is collected (default 1 h). */
export const DEFAULT_REPLICA_IDLE_SECONDS = 3600;
export const REPLICA_IDLE_ENV = "GLOBALVM_REPLICA_IDLE_SECONDS";

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
