import { describe, expect, it } from "vitest";
import { type DistributionInput, distributeInstances } from "../../api/orchestrator/distribution.ts";
import type { PlacementDatacenter } from "../../api/placement-types.ts";

function dc(name: string, over: Partial<PlacementDatacenter> = {}): PlacementDatacenter {
  return {
    name,
    region: "eu-west",
    status: "up",
    hasManager: true,
    freeVcpus: 16,
    freeMemoryMb: 32_768,
    ...over,
  };
}

function input(over: Partial<DistributionInput> = {}): DistributionInput {
  return {
    distribution: "even",
    region: "eu-west",
    machine: { vcpus: 1, memoryMb: 128 },
    ordinals: [0, 1, 2, 3],
    present: {},
    datacenters: [dc("eu-west-a"), dc("eu-west-b"), dc("us-east-a", { region: "us-east" })],
    holding: new Set(),
    ...over,
  };
}

/** How many of the assigned ordinals each datacenter got. */
function counts(result: ReturnType<typeof distributeInstances>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const a of result.assignments ?? []) out[a.datacenter] = (out[a.datacenter] ?? 0) + 1;
  return out;
}

describe("distributeInstances: even", () => {
  it("puts a group of 4 two in each datacenter of the region, never outside it", () => {
    const result = distributeInstances(input());
    expect(counts(result)).toEqual({ "eu-west-a": 2, "eu-west-b": 2 });
    // Round-robin by ordinal: a resize down (highest ordinals first) stays even.
    expect(result.assignments?.map((a) => a.datacenter)).toEqual([
      "eu-west-a",
      "eu-west-b",
      "eu-west-a",
      "eu-west-b",
    ]);
  });

  it("a resize from 4 to 6 keeps 3/3, and the next instance goes where fewest are", () => {
    const grown = distributeInstances(
      input({ ordinals: [4, 5], present: { "eu-west-a": 2, "eu-west-b": 2 } }),
    );
    expect(counts(grown)).toEqual({ "eu-west-a": 1, "eu-west-b": 1 });
    const uneven = distributeInstances(input({ ordinals: [3], present: { "eu-west-a": 2, "eu-west-b": 1 } }));
    expect(uneven.assignments).toEqual([{ ordinal: 3, datacenter: "eu-west-b" }]);
  });

  it("a tie goes to the datacenter holding the image", () => {
    const result = distributeInstances(input({ ordinals: [0], holding: new Set(["eu-west-b"]) }));
    expect(result.assignments).toEqual([{ ordinal: 0, datacenter: "eu-west-b" }]);
  });

  it("leaves out a datacenter that is down or has no manager, and says why", () => {
    const result = distributeInstances(
      input({
        datacenters: [
          dc("eu-west-a"),
          dc("eu-west-b", { status: "down" }),
          dc("eu-west-c", { hasManager: false, status: "unknown" }),
        ],
      }),
    );
    expect(counts(result)).toEqual({ "eu-west-a": 4 });
    expect(result.refused).toEqual([
      "eu-west-b: down",
      "eu-west-c: no regional manager registered, status unknown (no heartbeat yet)",
    ]);
  });

  it("fills what room there is, then fails naming every datacenter's reason", () => {
    const result = distributeInstances(
      input({
        ordinals: [0, 1, 2, 3, 4],
        datacenters: [
          dc("eu-west-a", { freeVcpus: 3 }),
          dc("eu-west-b", { freeVcpus: 1 }),
          dc("eu-west-c", { status: "down" }),
        ],
      }),
    );
    expect(result.assignments).toBeNull();
    expect(result.refused).toEqual([
      "eu-west-c: down",
      "eu-west-a: full after 3 more (0 vCPUs, 32384 MiB memory left)",
      "eu-west-b: full after 1 more (0 vCPUs, 32640 MiB memory left)",
    ]);
  });

  it("counts memory as well as vCPUs", () => {
    const result = distributeInstances(
      input({
        datacenters: [dc("eu-west-a", { freeMemoryMb: 256 }), dc("eu-west-b")],
        ordinals: [0, 1, 2, 3, 4, 5],
      }),
    );
    expect(counts(result)).toEqual({ "eu-west-a": 2, "eu-west-b": 4 });
  });

  it("names a region with no datacenter", () => {
    const result = distributeInstances(input({ region: "ap-south" }));
    expect(result.assignments).toBeNull();
    expect(result.refused).toEqual(["region ap-south has no datacenter"]);
  });
});

describe("distributeInstances: any", () => {
  it("packs the datacenter holding the image and overflows only when it is full", () => {
    const holdsB = input({ distribution: "any", holding: new Set(["eu-west-b"]) });
    expect(counts(distributeInstances(holdsB))).toEqual({ "eu-west-b": 4 });
    const small = distributeInstances({
      ...holdsB,
      datacenters: [dc("eu-west-a"), dc("eu-west-b", { freeVcpus: 3 })],
    });
    expect(small.assignments?.map((a) => a.datacenter)).toEqual([
      "eu-west-b",
      "eu-west-b",
      "eu-west-b",
      "eu-west-a",
    ]);
  });

  it("without the image anywhere, the datacenter with the most free vCPUs takes them", () => {
    const result = distributeInstances(
      input({
        distribution: "any",
        datacenters: [dc("eu-west-a", { freeVcpus: 8 }), dc("eu-west-b", { freeVcpus: 12 })],
      }),
    );
    // b stays ahead while it has more room left: 12,11,10,9 against a's 8.
    expect(counts(result)).toEqual({ "eu-west-b": 4 });
  });
});
