// The shapes of a placement decision: what the catalog loads the facts into
// (api/catalog/placement-facts.ts) and what the decision (api/orchestrator/placement.ts)
// takes and gives. Below both, so the catalog need not import the orchestrator.
import type { DatacenterStatus } from "../schemas/regions.ts";

export type PlacementStrategy = "image-locality" | "least-loaded" | "spread";

export interface PlacementConditions {
  /** Free vCPUs the datacenter must have (before placing the group). */
  minFreeVcpus?: number | undefined;
  /** Free memory the datacenter must have (before placing the group). */
  minFreeMemoryMb?: number | undefined;
  /** The most bytes of image the datacenter may have to receive. */
  maxTransferBytes?: number | undefined;
  /** Refuse datacenters whose status is not `up`. */
  requireUp: boolean;
}

export type PlacementRequest =
  | { kind: "region"; region: string }
  | {
      kind: "policy";
      regions: readonly string[];
      strategy: PlacementStrategy;
      conditions: PlacementConditions;
    };

export interface PlacementDatacenter {
  name: string;
  region: string;
  status: DatacenterStatus;
  /** False when no regional manager is registered: nothing can be started there. */
  hasManager: boolean;
  freeVcpus: number;
  freeMemoryMb: number;
}

export interface PlacementInput {
  request: PlacementRequest;
  /** One instance's shape; the group needs `size` of them. */
  machine: { vcpus: number; memoryMb: number };
  size: number;
  datacenters: readonly PlacementDatacenter[];
  image: {
    version: number;
    /** Size of that version in bytes. */
    size: number;
    /** Versions held (available) per datacenter. */
    holdings: readonly { datacenter: string; version: number }[];
  };
  /** For `spread`: how many of the project's instances each region already has. */
  projectInstancesByRegion?: Readonly<Record<string, number>>;
}

export type CandidateOutcome = "chosen" | "eligible" | "refused";

export interface PlacementCandidate {
  datacenter: string;
  region: string;
  outcome: CandidateOutcome;
  reasons: string[];
  transferBytes: number;
}

export interface PlacementResult {
  decision: { datacenter: string; region: string } | null;
  /** Chosen first, then eligible ones in order of preference, then refused ones by name. */
  candidates: PlacementCandidate[];
}
