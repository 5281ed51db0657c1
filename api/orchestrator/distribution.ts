// Distribution: which datacenter of its region takes each new instance of a regional group.
// A pure decision, like placement.ts: the caller loads the facts and records the result.
//
// `even` keeps the group's per-datacenter counts within one of each other: every new instance
// goes to the eligible datacenter with the fewest of the group's instances (ties: the one that
// holds the image, then by name). Resizing down removes the highest ordinals, which the same
// rule spread round-robin, so a resize keeps the counts even too.
// `any` packs: every new instance goes to the first eligible datacenter in image-locality
// order (holds the image, then most free vCPUs, then by name) that still has room, so a group
// overflows into a second datacenter only when the first is full.
//
// Eligible: in the region, a manager registered, up, and room for one more instance after the
// ones assigned so far. Datacenters that are not are left out of the count (a datacenter down
// for a while does not hold a regional group's creation back) and named with their reasons.
import type { Distribution } from "../../schemas/vm-groups.ts";
import type { PlacementDatacenter } from "../placement-types.ts";

export interface DistributionInput {
  distribution: Distribution;
  region: string;
  /** One instance's shape. */
  machine: { vcpus: number; memoryMb: number };
  /** The ordinals that need a datacenter, ascending. */
  ordinals: readonly number[];
  /** The group's current instances per datacenter (not counting retiring ones). */
  present: Readonly<Record<string, number>>;
  datacenters: readonly PlacementDatacenter[];
  /** The datacenters holding the version the new instances boot. */
  holding: ReadonlySet<string>;
}

export interface DistributionResult {
  /** A datacenter for every ordinal asked, or null when some ordinal fits nowhere. */
  assignments: { ordinal: number; datacenter: string }[] | null;
  /** Why each datacenter of the region was left out, for errors and progress: "eu-west-b: down". */
  refused: string[];
}

interface Room {
  dc: PlacementDatacenter;
  holds: boolean;
  count: number;
  freeVcpus: number;
  freeMemoryMb: number;
}

function refusalsOf(dc: PlacementDatacenter, machine: DistributionInput["machine"]): string[] {
  const reasons: string[] = [];
  if (!dc.hasManager) reasons.push("no regional manager registered");
  if (dc.status !== "up")
    reasons.push(dc.status === "unknown" ? "status unknown (no heartbeat yet)" : dc.status);
  if (dc.freeVcpus < machine.vcpus)
    reasons.push(`needs ${machine.vcpus} vCPU${machine.vcpus === 1 ? "" : "s"}, has ${dc.freeVcpus} free`);
  if (dc.freeMemoryMb < machine.memoryMb)
    reasons.push(`needs ${machine.memoryMb} MiB memory, has ${dc.freeMemoryMb} MiB free`);
  return reasons;
}

const byName = (a: Room, b: Room) => (a.dc.name < b.dc.name ? -1 : a.dc.name > b.dc.name ? 1 : 0);
const byLocality = (a: Room, b: Room) =>
  Number(b.holds) - Number(a.holds) || b.freeVcpus - a.freeVcpus || byName(a, b);
const evenOrder = (a: Room, b: Room) => a.count - b.count || byLocality(a, b);

/** Assigns each ordinal a datacenter of the region, or says why it cannot. */
export function distributeInstances(input: DistributionInput): DistributionResult {
  const { machine } = input;
  const rooms: Room[] = [];
  const refused: string[] = [];
  for (const dc of input.datacenters) {
    if (dc.region !== input.region) continue;
    const reasons = refusalsOf(dc, machine);
    if (reasons.length > 0) {
      refused.push(`${dc.name}: ${reasons.join(", ")}`);
      continue;
    }
    rooms.push({
      dc,
      holds: input.holding.has(dc.name),
      count: input.present[dc.name] ?? 0,
      freeVcpus: dc.freeVcpus,
      freeMemoryMb: dc.freeMemoryMb,
    });
  }
  if (input.datacenters.every((dc) => dc.region !== input.region))
    refused.push(`region ${input.region} has no datacenter`);

  const assignments: { ordinal: number; datacenter: string }[] = [];
  for (const ordinal of input.ordinals) {
    const open = rooms.filter((r) => r.freeVcpus >= machine.vcpus && r.freeMemoryMb >= machine.memoryMb);
    const [room] = open.sort(input.distribution === "even" ? evenOrder : byLocality);
    if (!room) {
      const full = rooms.map(
        (r) =>
          `${r.dc.name}: full after ${r.count - (input.present[r.dc.name] ?? 0)} more (${r.freeVcpus} vCPUs, ${r.freeMemoryMb} MiB memory left)`,
      );
      return { assignments: null, refused: [...refused, ...full] };
    }
    room.count += 1;
    room.freeVcpus -= machine.vcpus;
    room.freeMemoryMb -= machine.memoryMb;
    assignments.push({ ordinal, datacenter: room.dc.name });
  }
  return { assignments, refused };
}
