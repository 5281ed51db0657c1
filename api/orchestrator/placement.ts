// Placement: which datacenter takes a VM group. A pure decision (no I/O): the caller loads the
// candidates, the image holdings and the project's load from the catalog, and records the result.
//
// Every candidate datacenter gets an outcome — chosen, eligible (passed every check but lost
// to the chosen one) or refused — with human reasons, so `POST /v1/placements:explain` and the
// orchestrator's operation errors can say why.
//
// Bytes to transfer are an estimate: 0 when the datacenter holds the wanted version, otherwise
// the whole version size. A datacenter holding an older version will usually receive fewer
// bytes (only the chunks it lacks cross the network), but the catalog does not know how many
// chunks the versions share, so the full size is kept as an upper bound; such a datacenter is
// only preferred over one holding nothing when their estimates tie.

import { formatBytes } from "../../common/format-bytes.ts";
import type { DatacenterStatus } from "../../schemas/regions.ts";
import type { PlacementPolicy } from "../../schemas/vm-groups.ts";
import type {
  PlacementCandidate,
  PlacementConditions,
  PlacementDatacenter,
  PlacementInput,
  PlacementRequest,
  PlacementResult,
  PlacementStrategy,
} from "../placement-types.ts";

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

interface Scored {
  dc: PlacementDatacenter;
  transferBytes: number;
  holdsOlder: boolean;
  regionLoad: number;
}

function statusRefusal(status: DatacenterStatus): string {
  if (status === "unknown") return "status unknown (no heartbeat yet)";
  return status;
}

/** Negative when a is preferred; zero only for the same datacenter. */
type Comparator = (a: Scored, b: Scored) => number;

const byLocality: Comparator = (a, b) =>
  a.transferBytes - b.transferBytes || Number(b.holdsOlder) - Number(a.holdsOlder);
const byLoad: Comparator = (a, b) => b.dc.freeVcpus - a.dc.freeVcpus || b.dc.freeMemoryMb - a.dc.freeMemoryMb;
const bySpread: Comparator = (a, b) => a.regionLoad - b.regionLoad || byLocality(a, b);
const byName: Comparator = (a, b) => (a.dc.name < b.dc.name ? -1 : a.dc.name > b.dc.name ? 1 : 0);

function comparatorOf(strategy: PlacementStrategy): Comparator {
  const primary = strategy === "least-loaded" ? byLoad : strategy === "spread" ? bySpread : byLocality;
  return (a, b) => primary(a, b) || byName(a, b);
}

/** Why `winner` beat `loser` under the strategy: the first criterion that separates them. */
function whyLost(strategy: PlacementStrategy, winner: Scored, loser: Scored): string {
  const w = winner.dc.name;
  if (strategy === "spread" && winner.regionLoad !== loser.regionLoad) {
    return `${w} won: region ${winner.dc.region} has fewer of the project's instances (${winner.regionLoad} vs ${loser.regionLoad} in ${loser.dc.region})`;
  }
  if (strategy === "least-loaded") {
    if (winner.dc.freeVcpus !== loser.dc.freeVcpus)
      return `${w} won: more free vCPUs (${winner.dc.freeVcpus} vs ${loser.dc.freeVcpus})`;
    if (winner.dc.freeMemoryMb !== loser.dc.freeMemoryMb)
      return `${w} won: more free memory (${winner.dc.freeMemoryMb} MiB vs ${loser.dc.freeMemoryMb} MiB)`;
  } else {
    if (winner.transferBytes !== loser.transferBytes) {
      const what = winner.transferBytes === 0 ? "holds the image version" : "needs fewer bytes";
      return `${w} won: ${what} (transfers ${formatBytes(winner.transferBytes)} vs ${formatBytes(loser.transferBytes)})`;
    }
    if (winner.holdsOlder !== loser.holdsOlder)
      return `${w} won: holds an older version, so only the missing chunks move`;
  }
  return `${w} won the tie by name`;
}

function whyChosen(strategy: PlacementStrategy, chosen: Scored, explicitRegion: boolean): string {
  const transfer =
    chosen.transferBytes === 0
      ? "holds the image version"
      : `transfers ${formatBytes(chosen.transferBytes)}${chosen.holdsOlder ? " at most (holds an older version)" : ""}`;
  if (explicitRegion) return `chosen in the requested region: ${transfer}`;
  if (strategy === "least-loaded")
    return `chosen by least-loaded: ${chosen.dc.freeVcpus} vCPUs and ${chosen.dc.freeMemoryMb} MiB free; ${transfer}`;
  if (strategy === "spread")
    return `chosen by spread: region ${chosen.dc.region} has ${plural(chosen.regionLoad, "instance")} of the project; ${transfer}`;
  return `chosen by image-locality: ${transfer}`;
}

/** Picks the datacenter for a group and explains the outcome for every candidate. */
export function choosePlacement(input: PlacementInput): PlacementResult {
  const { request, machine, size, image } = input;
  const needVcpus = machine.vcpus * size;
  const needMemoryMb = machine.memoryMb * size;
  const explicit = request.kind === "region";
  const allowed = new Set(explicit ? [request.region] : request.regions);
  const conditions: PlacementConditions = explicit ? { requireUp: true } : request.conditions;
  const strategy: PlacementStrategy = explicit ? "image-locality" : request.strategy;

  const eligible: Scored[] = [];
  const refused: PlacementCandidate[] = [];
  for (const dc of input.datacenters) {
    const held = image.holdings.filter((h) => h.datacenter === dc.name).map((h) => h.version);
    const transferBytes = held.includes(image.version) ? 0 : image.size;
    const scored: Scored = {
      dc,
      transferBytes,
      holdsOlder: transferBytes > 0 && held.some((v) => v < image.version),
      regionLoad: input.projectInstancesByRegion?.[dc.region] ?? 0,
    };
    const reasons: string[] = [];
    if (!allowed.has(dc.region)) {
      reasons.push(
        explicit
          ? `not in the requested region ${request.region}`
          : `not in allowed regions (${[...allowed].join(", ")})`,
      );
    } else {
      if (!dc.hasManager) reasons.push("no regional manager registered");
      if (conditions.requireUp && dc.status !== "up") reasons.push(statusRefusal(dc.status));
      if (dc.freeVcpus < needVcpus)
        reasons.push(`needs ${plural(needVcpus, "vCPU")}, has ${dc.freeVcpus} free`);
      if (dc.freeMemoryMb < needMemoryMb)
        reasons.push(`needs ${needMemoryMb} MiB memory, has ${dc.freeMemoryMb} MiB free`);
      if (conditions.minFreeVcpus !== undefined && dc.freeVcpus < conditions.minFreeVcpus)
        reasons.push(`has ${dc.freeVcpus} free vCPUs < min_free_vcpus ${conditions.minFreeVcpus}`);
      if (conditions.minFreeMemoryMb !== undefined && dc.freeMemoryMb < conditions.minFreeMemoryMb)
        reasons.push(
          `has ${dc.freeMemoryMb} MiB free memory < min_free_memory_mb ${conditions.minFreeMemoryMb}`,
        );
      if (conditions.maxTransferBytes !== undefined && transferBytes > conditions.maxTransferBytes)
        reasons.push(
          `would transfer ${formatBytes(transferBytes)} > max ${formatBytes(conditions.maxTransferBytes)}`,
        );
    }
    if (reasons.length > 0) {
      refused.push({ datacenter: dc.name, region: dc.region, outcome: "refused", reasons, transferBytes });
    } else {
      eligible.push(scored);
    }
  }

  eligible.sort(comparatorOf(strategy));
  refused.sort((a, b) => (a.datacenter < b.datacenter ? -1 : a.datacenter > b.datacenter ? 1 : 0));
  const [winner] = eligible;
  if (!winner) return { decision: null, candidates: refused };

  const ranked = eligible.map(
    (s, i): PlacementCandidate => ({
      datacenter: s.dc.name,
      region: s.dc.region,
      outcome: i === 0 ? "chosen" : "eligible",
      reasons: [i === 0 ? whyChosen(strategy, s, explicit) : whyLost(strategy, winner, s)],
      transferBytes: s.transferBytes,
    }),
  );
  return {
    decision: { datacenter: winner.dc.name, region: winner.dc.region },
    candidates: [...ranked, ...refused],
  };
}

/** One line per refused candidate, for errors: "eu-west-a: down; us-east-a: needs 4 vCPUs, has 2 free". */
export function summarizeRefusals(candidates: readonly PlacementCandidate[]): string {
  if (candidates.length === 0) return "no datacenter is registered";
  return candidates.map((c) => `${c.datacenter}: ${c.reasons.join(", ")}`).join("; ");
}

/** The request of a VM group as stored (`region` or `placement`, exactly one is set). */
export function placementRequestOf(group: {
  region: string | null;
  placement: PlacementPolicy | null;
}): PlacementRequest {
  if (group.placement) {
    const { regions, strategy, conditions } = group.placement;
    return {
      kind: "policy",
      regions,
      strategy,
      conditions: {
        minFreeVcpus: conditions.min_free_vcpus,
        minFreeMemoryMb: conditions.min_free_memory_mb,
        maxTransferBytes: conditions.max_transfer_bytes,
        requireUp: conditions.require_up,
      },
    };
  }
  if (!group.region) throw new Error("a VM group has either a region or a placement policy");
  return { kind: "region", region: group.region };
}
