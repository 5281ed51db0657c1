// The scheduler inside a datacenter: which host runs an instance. A pure decision (no I/O), in
// the manner of Nova's filter scheduler: filters refuse the hosts that cannot run the instance,
// weighers score the rest, the best score wins and ties go to the host name, so the same facts
// always give the same answer (a restarted manager, or the explain view, agrees with itself).
//
// Like the control plane's placement (api/orchestrator/placement.ts), every host gets an outcome
// — chosen, eligible (passed every filter but scored lower) or refused — with human reasons, so
// a create that cannot fit fails naming each host's reason.
//
// Filters report every reason a host fails, not only the first, so an operator fixing one
// shortfall is not surprised by the next. Weighers are normalised to [0,1] from the host's own
// facts (not relative to the other hosts, unlike Nova's min-max normalisation), so a host's
// score reads the same whatever else is in the datacenter; they are then multiplied by WEIGHTS.

import { formatBytes } from "../../common/format-bytes.ts";

export interface SchedulerHost {
  name: string;
  state: "up" | "down";
  arch: "x86_64" | "aarch64";
  formats: readonly ("raw" | "qcow2")[];
  capacity: { vcpus: number; memoryMb: number; diskBytes: number };
  /** What is not claimed by the instances already placed on the host (the caller computes it). */
  free: { vcpus: number; memoryMb: number; diskBytes: number };
  /** "imageId@version" of the versions in the host's image cache. */
  cached: ReadonlySet<string>;
  /** Instances placed on the host: their group IDs (undefined when the instance has none). */
  placed: readonly { instanceId: string; vmGroupId: string | undefined }[];
  /** Whether the host attaches guests to their networks (its agent has an underlay address). */
  networks: boolean;
}

export interface HostRequest {
  instanceId: string;
  vmGroupId: string | undefined;
  /** Anti-affinity: refuse hosts that already hold an instance of the same group. */
  spreadHosts: boolean;
  vcpus: number;
  memoryMb: number;
  image: { imageId: string; version: number; format: "raw" | "qcow2"; size: number };
  /** Default "x86_64". */
  arch?: "x86_64" | "aarch64";
  /**
   * The instance is on a network: "preferred" (a new instance: on a host without networking it
   * runs isolated) or "required" (it has its address already and must keep it where it moves).
   */
  network?: "preferred" | "required";
}

export type HostOutcome = "chosen" | "eligible" | "refused";

export interface HostCandidate {
  host: string;
  outcome: HostOutcome;
  reasons: string[];
  score: number;
}

export interface HostDecision {
  host: string | null;
  /** Chosen first, then eligible by score, then refused by name. */
  candidates: HostCandidate[];
  /** One sentence naming every host's reason when nothing fits, e.g. "no host can run inst_…: h1: 0 of 2 vCPUs free (needs 1); h2: down"; null when a host was chosen. */
  refusal: string | null;
}

/**
 * Multipliers of the weighers. Spread outweighs everything: one host failing should not take
 * two instances of a group while another host could hold one (going from 0 to 1 instance of the
 * group costs 7 × ½ = 3.5, more than cache and load together can give, 3). The cache outweighs any
 * load difference: a cached version boots at once, an uncached one waits for its transfer.
 * Networking outweighs even spread: a guest on a host that attaches none has no address at all.
 */
export const WEIGHTS = { cached: 2, load: 1, spread: 7, network: 10 } as const;

/** "img_a@3": how host caches name a version. */
export const versionKey = (image: { imageId: string; version: number }) =>
  `${image.imageId}@${image.version}`;

const plural = (n: number, one: string) => `${n} ${one}${n === 1 ? "" : "s"}`;
const fraction = (free: number, total: number) => (total > 0 ? Math.min(1, Math.max(0, free / total)) : 0);
// Thousandths: float noise never decides between hosts whose scores are equal in arithmetic.
const round = (x: number) => Math.round(x * 1000) / 1000;

/** The group's other instances on the host (a request never counts against itself, so rescheduling works). */
function groupPeers(host: SchedulerHost, request: HostRequest): string[] {
  if (request.vmGroupId === undefined) return [];
  return host.placed
    .filter((p) => p.vmGroupId === request.vmGroupId && p.instanceId !== request.instanceId)
    .map((p) => p.instanceId);
}

type Filter = (host: SchedulerHost, request: HostRequest) => string | null;

const FILTERS: readonly Filter[] = [
  (h) => (h.state === "up" ? null : "down"),
  (h, r) => {
    const arch = r.arch ?? "x86_64";
    return h.arch === arch ? null : `architecture ${h.arch} (needs ${arch})`;
  },
  (h, r) =>
    h.formats.includes(r.image.format)
      ? null
      : `cannot boot ${r.image.format} images (supports ${h.formats.join(", ") || "none"})`,
  // No CPU overcommit: a vCPU promised to a guest is one the host really has.
  (h, r) =>
    h.free.vcpus >= r.vcpus
      ? null
      : `${h.free.vcpus} of ${plural(h.capacity.vcpus, "vCPU")} free (needs ${r.vcpus})`,
  (h, r) =>
    h.free.memoryMb >= r.memoryMb
      ? null
      : `${h.free.memoryMb} of ${h.capacity.memoryMb} MiB memory free (needs ${r.memoryMb})`,
  // Only an uncached version costs disk: a cached one is shared by every guest booting from it.
  (h, r) =>
    h.cached.has(versionKey(r.image)) || h.free.diskBytes >= r.image.size
      ? null
      : `${formatBytes(h.free.diskBytes)} of ${formatBytes(h.capacity.diskBytes)} disk free (needs ${formatBytes(r.image.size)} for ${versionKey(r.image)}, not cached)`,
  (h, r) =>
    r.network !== "required" || h.networks
      ? null
      : "attaches no guests to networks (its agent has no --guest-network-underlay), and the instance keeps its address",
  (h, r) => {
    const peers = r.spreadHosts ? groupPeers(h, r) : [];
    return peers.length === 0
      ? null
      : `anti-affinity: already holds ${peers.join(", ")} of group ${r.vmGroupId} (spread_hosts)`;
  },
];

interface Weigher {
  name: keyof typeof WEIGHTS;
  /** In [0,1], higher is better. */
  score(host: SchedulerHost, request: HostRequest): number;
  /** The fact behind the score, for the reasons. */
  describe(host: SchedulerHost, request: HostRequest): string;
  /** Why the winner beat the loser on this weigher. */
  whyBetter(winner: SchedulerHost, loser: SchedulerHost, request: HostRequest): string;
}

const WEIGHERS: readonly Weigher[] = [
  {
    name: "network",
    // Zero for every host when no network is asked: the other weighers alone decide.
    score: (h, r) => (r.network && h.networks ? 1 : 0),
    describe: (h, r) =>
      !r.network
        ? "no network asked"
        : h.networks
          ? "attaches guests to networks"
          : "attaches no guests to networks: the guest would run isolated",
    whyBetter: (w) => `${w.name} attaches guests to networks, this host does not`,
  },
  {
    name: "cached",
    score: (h, r) => (h.cached.has(versionKey(r.image)) ? 1 : 0),
    describe: (h, r) =>
      h.cached.has(versionKey(r.image))
        ? `${versionKey(r.image)} cached`
        : `${versionKey(r.image)} not cached, transfers ${formatBytes(r.image.size)}`,
    whyBetter: (w, _l, r) => `${w.name} has ${versionKey(r.image)} cached, this host does not`,
  },
  {
    name: "load",
    score: (h) =>
      (fraction(h.free.vcpus, h.capacity.vcpus) + fraction(h.free.memoryMb, h.capacity.memoryMb)) / 2,
    describe: (h) =>
      `${h.free.vcpus} of ${plural(h.capacity.vcpus, "vCPU")} and ${h.free.memoryMb} of ${h.capacity.memoryMb} MiB free`,
    whyBetter: (w) => `${w.name} is less loaded`,
  },
  {
    name: "spread",
    score: (h, r) => 1 / (1 + groupPeers(h, r).length),
    describe: (h, r) =>
      r.vmGroupId === undefined
        ? "no group to spread"
        : `${plural(groupPeers(h, r).length, "instance")} of group ${r.vmGroupId}`,
    whyBetter: (w, l, r) =>
      `${w.name} has fewer instances of group ${r.vmGroupId} (${groupPeers(w, r).length} vs ${groupPeers(l, r).length})`,
  },
];

interface Scored {
  host: SchedulerHost;
  total: number;
  parts: { weigher: Weigher; value: number }[];
}

function weigh(host: SchedulerHost, request: HostRequest): Scored {
  const parts = WEIGHERS.map((weigher) => ({
    weigher,
    value: round(WEIGHTS[weigher.name] * weigher.score(host, request)),
  }));
  return { host, total: round(parts.reduce((sum, p) => sum + p.value, 0)), parts };
}

const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function breakdown(s: Scored, request: HostRequest): string[] {
  return s.parts.map((p) => `${p.weigher.describe(s.host, request)} (+${p.value})`);
}

/** The weigher that gave the winner most over the loser; the name when the scores tie. */
function whyLost(winner: Scored, loser: Scored, request: HostRequest): string {
  const head = `lost to ${winner.host.name} (score ${winner.total} vs ${loser.total})`;
  if (winner.total === loser.total) return `${head}: tie broken by name`;
  let best = winner.parts[0];
  let bestGap = Number.NEGATIVE_INFINITY;
  winner.parts.forEach((p, i) => {
    const gap = p.value - (loser.parts[i]?.value ?? 0);
    if (gap > bestGap) [best, bestGap] = [p, gap];
  });
  return `${head}: ${best?.weigher.whyBetter(winner.host, loser.host, request)}`;
}

/** Picks the host for one instance and explains the outcome for every host. */
export function scheduleInstance(hosts: readonly SchedulerHost[], request: HostRequest): HostDecision {
  const eligible: Scored[] = [];
  const refused: HostCandidate[] = [];
  for (const host of hosts) {
    const reasons = FILTERS.map((filter) => filter(host, request)).filter((r): r is string => r !== null);
    if (reasons.length > 0) refused.push({ host: host.name, outcome: "refused", reasons, score: 0 });
    else eligible.push(weigh(host, request));
  }
  eligible.sort((a, b) => b.total - a.total || byName(a.host.name, b.host.name));
  refused.sort((a, b) => byName(a.host, b.host));

  const [winner, runnerUp] = eligible;
  if (!winner) {
    const why =
      refused.length === 0
        ? "no host is registered"
        : refused.map((c) => `${c.host}: ${c.reasons.join(", ")}`).join("; ");
    return { host: null, candidates: refused, refusal: `no host can run ${request.instanceId}: ${why}` };
  }
  const ranked = eligible.map((s, i): HostCandidate => {
    const head =
      i > 0
        ? whyLost(winner, s, request)
        : runnerUp && runnerUp.total === s.total
          ? `chosen with score ${s.total}: ties with ${runnerUp.host.name}, first by name`
          : `chosen with the highest score, ${s.total}`;
    return {
      host: s.host.name,
      outcome: i === 0 ? "chosen" : "eligible",
      reasons: [head, ...breakdown(s, request)],
      score: s.total,
    };
  });
  return { host: winner.host.name, candidates: [...ranked, ...refused], refusal: null };
}

/** Places several instances one after another, each seeing the earlier ones' claims (used for a whole group and for the explain view). */
export function scheduleInstances(
  hosts: readonly SchedulerHost[],
  requests: readonly HostRequest[],
): HostDecision[] {
  // Copies, so the caller's hosts are untouched and each claim is visible to the next request.
  const state: SchedulerHost[] = hosts.map((h) => ({
    ...h,
    free: { ...h.free },
    cached: new Set(h.cached),
    placed: [...h.placed],
  }));
  return requests.map((request) => {
    const decision = scheduleInstance(state, request);
    const index = state.findIndex((h) => h.name === decision.host);
    const host = state[index];
    if (!host) return decision;
    const key = versionKey(request.image);
    const cached = new Set(host.cached);
    // The transfer is claimed once per host: later instances of the same version find it cached.
    const diskBytes = cached.has(key) ? host.free.diskBytes : host.free.diskBytes - request.image.size;
    cached.add(key);
    state[index] = {
      ...host,
      free: {
        vcpus: host.free.vcpus - request.vcpus,
        memoryMb: host.free.memoryMb - request.memoryMb,
        diskBytes,
      },
      cached,
      placed: [...host.placed, { instanceId: request.instanceId, vmGroupId: request.vmGroupId }],
    };
    return decision;
  });
}
