import { describe, expect, it } from "vitest";
import { choosePlacement, placementRequestOf, summarizeRefusals } from "../../api/orchestrator/placement.ts";
import type {
  PlacementConditions,
  PlacementDatacenter,
  PlacementInput,
  PlacementStrategy,
} from "../../api/placement-types.ts";
import { formatBytes } from "../../common/format-bytes.ts";

const MiB = 1024 * 1024;

function dc(name: string, region: string, over: Partial<PlacementDatacenter> = {}): PlacementDatacenter {
  return { name, region, status: "up", hasManager: true, freeVcpus: 16, freeMemoryMb: 32_768, ...over };
}

function policy(
  regions: string[],
  strategy: PlacementStrategy = "image-locality",
  conditions: Partial<PlacementConditions> = {},
): PlacementInput["request"] {
  return { kind: "policy", regions, strategy, conditions: { requireUp: true, ...conditions } };
}

function input(over: Partial<PlacementInput> = {}): PlacementInput {
  return {
    request: policy(["eu-west", "us-east"]),
    machine: { vcpus: 2, memoryMb: 1024 },
    size: 2,
    datacenters: [dc("eu-west-a", "eu-west"), dc("us-east-a", "us-east")],
    image: { version: 3, size: 64 * MiB, holdings: [] },
    ...over,
  };
}

const outcomes = (result: ReturnType<typeof choosePlacement>) =>
  Object.fromEntries(result.candidates.map((c) => [c.datacenter, c.outcome]));
const candidate = (result: ReturnType<typeof choosePlacement>, name: string) => {
  const found = result.candidates.find((c) => c.datacenter === name);
  if (!found) throw new Error(`no candidate ${name}`);
  return found;
};

describe("formatBytes", () => {
  it.each([
    [0, "0 B"],
    [1023, "1023 B"],
    [1536, "1.5 KiB"],
    [64 * MiB, "64 MiB"],
    [10 * MiB, "10 MiB"],
    [3 * 1024 * MiB, "3 GiB"],
  ])("%d → %s", (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});

describe("choosePlacement: image-locality", () => {
  it("prefers the datacenter holding the version, whatever the name order", () => {
    const result = choosePlacement(
      input({ image: { version: 3, size: 64 * MiB, holdings: [{ datacenter: "us-east-a", version: 3 }] } }),
    );
    expect(result.decision).toEqual({ datacenter: "us-east-a", region: "us-east" });
    expect(candidate(result, "us-east-a")).toMatchObject({ outcome: "chosen", transferBytes: 0 });
    expect(candidate(result, "us-east-a").reasons[0]).toMatch(/image-locality: holds the image version/);
    const loser = candidate(result, "eu-west-a");
    expect(loser).toMatchObject({ outcome: "eligible", transferBytes: 64 * MiB });
    expect(loser.reasons).toEqual(["us-east-a won: holds the image version (transfers 0 B vs 64 MiB)"]);
  });

  it("a datacenter holding only another version transfers the whole version (upper bound) but wins the tie", () => {
    const result = choosePlacement(
      input({ image: { version: 3, size: 64 * MiB, holdings: [{ datacenter: "us-east-a", version: 2 }] } }),
    );
    expect(result.decision?.datacenter).toBe("us-east-a");
    expect(candidate(result, "us-east-a").transferBytes).toBe(64 * MiB);
    expect(candidate(result, "us-east-a").reasons[0]).toMatch(/at most \(holds an older version\)/);
    expect(candidate(result, "eu-west-a").reasons[0]).toMatch(/holds an older version/);
  });

  it("a newer version held does not count as holding the wanted one", () => {
    const result = choosePlacement(
      input({ image: { version: 1, size: 5 * MiB, holdings: [{ datacenter: "us-east-a", version: 2 }] } }),
    );
    expect(result.decision?.datacenter).toBe("eu-west-a");
    expect(candidate(result, "us-east-a").transferBytes).toBe(5 * MiB);
    expect(candidate(result, "us-east-a").reasons).toEqual(["eu-west-a won the tie by name"]);
  });

  it("breaks ties by name, independent of input order", () => {
    const datacenters = [dc("eu-west-c", "eu-west"), dc("eu-west-a", "eu-west"), dc("eu-west-b", "eu-west")];
    const forward = choosePlacement(input({ datacenters }));
    const backward = choosePlacement(input({ datacenters: [...datacenters].reverse() }));
    expect(forward).toEqual(backward);
    expect(forward.decision?.datacenter).toBe("eu-west-a");
    expect(forward.candidates.map((c) => c.datacenter)).toEqual(["eu-west-a", "eu-west-b", "eu-west-c"]);
    expect(candidate(forward, "eu-west-c").reasons).toEqual(["eu-west-a won the tie by name"]);
  });
});

describe("choosePlacement: least-loaded", () => {
  const datacenters = [
    dc("eu-west-a", "eu-west", { freeVcpus: 4, freeMemoryMb: 60_000 }),
    dc("us-east-a", "us-east", { freeVcpus: 12, freeMemoryMb: 8_000 }),
    dc("us-east-b", "us-east", { freeVcpus: 12, freeMemoryMb: 9_000 }),
  ];

  it("takes the most free vCPUs, then the most free memory, ignoring image locality", () => {
    const result = choosePlacement(
      input({
        request: policy(["eu-west", "us-east"], "least-loaded"),
        datacenters,
        image: { version: 1, size: MiB, holdings: [{ datacenter: "eu-west-a", version: 1 }] },
      }),
    );
    expect(result.decision).toEqual({ datacenter: "us-east-b", region: "us-east" });
    expect(result.candidates.map((c) => [c.datacenter, c.outcome])).toEqual([
      ["us-east-b", "chosen"],
      ["us-east-a", "eligible"],
      ["eu-west-a", "eligible"],
    ]);
    expect(candidate(result, "us-east-a").reasons).toEqual([
      "us-east-b won: more free memory (9000 MiB vs 8000 MiB)",
    ]);
    expect(candidate(result, "eu-west-a").reasons).toEqual(["us-east-b won: more free vCPUs (12 vs 4)"]);
    expect(candidate(result, "us-east-b").reasons[0]).toMatch(/least-loaded: 12 vCPUs and 9000 MiB free/);
  });

  it("equal load falls back to the name", () => {
    const result = choosePlacement(
      input({
        request: policy(["eu-west"], "least-loaded"),
        datacenters: [dc("eu-west-b", "eu-west"), dc("eu-west-a", "eu-west")],
      }),
    );
    expect(result.decision?.datacenter).toBe("eu-west-a");
    expect(candidate(result, "eu-west-b").reasons).toEqual(["eu-west-a won the tie by name"]);
  });
});

describe("choosePlacement: spread", () => {
  const datacenters = [dc("ap-south-a", "ap-south"), dc("eu-west-a", "eu-west"), dc("us-east-a", "us-east")];

  it("takes the region with the fewest of the project's instances", () => {
    const result = choosePlacement(
      input({
        request: policy(["ap-south", "eu-west", "us-east"], "spread"),
        datacenters,
        projectInstancesByRegion: { "ap-south": 3, "eu-west": 2, "us-east": 0 },
      }),
    );
    expect(result.decision).toEqual({ datacenter: "us-east-a", region: "us-east" });
    expect(result.candidates.map((c) => c.datacenter)).toEqual(["us-east-a", "eu-west-a", "ap-south-a"]);
    expect(candidate(result, "ap-south-a").reasons).toEqual([
      "us-east-a won: region us-east has fewer of the project's instances (0 vs 3 in ap-south)",
    ]);
    expect(candidate(result, "us-east-a").reasons[0]).toMatch(/spread: region us-east has 0 instances/);
  });

  it("equal spread prefers image locality, then the name; missing counts are zero", () => {
    const local = choosePlacement(
      input({
        request: policy(["ap-south", "eu-west", "us-east"], "spread"),
        datacenters,
        projectInstancesByRegion: { "ap-south": 1 },
        image: { version: 1, size: MiB, holdings: [{ datacenter: "us-east-a", version: 1 }] },
      }),
    );
    expect(local.decision?.datacenter).toBe("us-east-a");
    expect(candidate(local, "eu-west-a").reasons[0]).toMatch(/holds the image version/);

    const byName = choosePlacement(input({ request: policy(["eu-west", "us-east"], "spread"), datacenters }));
    expect(byName.decision?.datacenter).toBe("eu-west-a");
  });
});

describe("choosePlacement: conditions", () => {
  it("refuses datacenters outside the allowed regions", () => {
    const result = choosePlacement(
      input({
        request: policy(["us-east"]),
        datacenters: [dc("eu-west-a", "eu-west"), dc("us-east-a", "us-east")],
      }),
    );
    expect(result.decision?.datacenter).toBe("us-east-a");
    expect(candidate(result, "eu-west-a")).toMatchObject({
      outcome: "refused",
      reasons: ["not in allowed regions (us-east)"],
    });
  });

  it("require_up refuses down, degraded and unknown datacenters; without it they are eligible", () => {
    const datacenters = [
      dc("eu-west-a", "eu-west", { status: "down" }),
      dc("eu-west-b", "eu-west", { status: "degraded" }),
      dc("eu-west-c", "eu-west", { status: "unknown" }),
    ];
    const strict = choosePlacement(input({ request: policy(["eu-west"]), datacenters }));
    expect(strict.decision).toBeNull();
    expect(strict.candidates.map((c) => c.reasons)).toEqual([
      ["down"],
      ["degraded"],
      ["status unknown (no heartbeat yet)"],
    ]);
    const lax = choosePlacement(
      input({ request: policy(["eu-west"], "image-locality", { requireUp: false }), datacenters }),
    );
    expect(lax.decision?.datacenter).toBe("eu-west-a");
    expect(outcomes(lax)).toEqual({
      "eu-west-a": "chosen",
      "eu-west-b": "eligible",
      "eu-west-c": "eligible",
    });
  });

  it("always refuses a datacenter without a manager", () => {
    const result = choosePlacement(
      input({
        request: policy(["eu-west"], "image-locality", { requireUp: false }),
        datacenters: [dc("eu-west-a", "eu-west", { hasManager: false })],
      }),
    );
    expect(result.decision).toBeNull();
    expect(result.candidates[0]?.reasons).toEqual(["no regional manager registered"]);
  });

  it("needs room for machine × size, in vCPUs and memory", () => {
    const result = choosePlacement(
      input({
        machine: { vcpus: 2, memoryMb: 512 },
        size: 2,
        request: policy(["eu-west"]),
        datacenters: [
          dc("eu-west-a", "eu-west", { freeVcpus: 3 }),
          dc("eu-west-b", "eu-west", { freeMemoryMb: 1023 }),
          dc("eu-west-c", "eu-west", { freeVcpus: 4, freeMemoryMb: 1024 }),
        ],
      }),
    );
    expect(result.decision?.datacenter).toBe("eu-west-c");
    expect(candidate(result, "eu-west-a").reasons).toEqual(["needs 4 vCPUs, has 3 free"]);
    expect(candidate(result, "eu-west-b").reasons).toEqual(["needs 1024 MiB memory, has 1023 MiB free"]);
  });

  it("min_free_vcpus and min_free_memory_mb refuse datacenters below them (at the bound passes)", () => {
    const result = choosePlacement(
      input({
        request: policy(["eu-west"], "image-locality", { minFreeVcpus: 8, minFreeMemoryMb: 4096 }),
        datacenters: [
          dc("eu-west-a", "eu-west", { freeVcpus: 7 }),
          dc("eu-west-b", "eu-west", { freeMemoryMb: 4095 }),
          dc("eu-west-c", "eu-west", { freeVcpus: 8, freeMemoryMb: 4096 }),
        ],
      }),
    );
    expect(result.decision?.datacenter).toBe("eu-west-c");
    expect(candidate(result, "eu-west-a").reasons).toEqual(["has 7 free vCPUs < min_free_vcpus 8"]);
    expect(candidate(result, "eu-west-b").reasons).toEqual([
      "has 4095 MiB free memory < min_free_memory_mb 4096",
    ]);
  });

  it("max_transfer_bytes refuses datacenters that would receive more; 0 allows only holders", () => {
    const image = { version: 2, size: 64 * MiB, holdings: [{ datacenter: "us-east-a", version: 2 }] };
    const capped = choosePlacement(
      input({ request: policy(["eu-west"], "image-locality", { maxTransferBytes: 10 * MiB }), image }),
    );
    expect(capped.decision).toBeNull();
    expect(candidate(capped, "eu-west-a").reasons).toEqual(["would transfer 64 MiB > max 10 MiB"]);

    const holdersOnly = choosePlacement(
      input({ request: policy(["eu-west", "us-east"], "least-loaded", { maxTransferBytes: 0 }), image }),
    );
    expect(holdersOnly.decision?.datacenter).toBe("us-east-a");
    expect(candidate(holdersOnly, "eu-west-a").outcome).toBe("refused");

    const exact = choosePlacement(
      input({ request: policy(["eu-west"], "image-locality", { maxTransferBytes: 64 * MiB }), image }),
    );
    expect(exact.decision?.datacenter).toBe("eu-west-a");
  });

  it("lists every failed check of a candidate", () => {
    const result = choosePlacement(
      input({
        request: policy(["eu-west"], "image-locality", { maxTransferBytes: 0, minFreeVcpus: 4 }),
        datacenters: [dc("eu-west-a", "eu-west", { status: "down", freeVcpus: 1, freeMemoryMb: 100 })],
      }),
    );
    expect(result.candidates[0]?.reasons).toEqual([
      "down",
      "needs 4 vCPUs, has 1 free",
      "needs 2048 MiB memory, has 100 MiB free",
      "has 1 free vCPUs < min_free_vcpus 4",
      "would transfer 64 MiB > max 0 B",
    ]);
  });
});

describe("choosePlacement: explicit region", () => {
  const datacenters = [
    dc("eu-west-a", "eu-west"),
    dc("us-east-a", "us-east", { status: "down" }),
    dc("us-east-b", "us-east", { freeVcpus: 1 }),
    dc("us-east-c", "us-east"),
    dc("us-east-d", "us-east"),
  ];

  it("chooses among the region's live datacenters with room, preferring one holding the image", () => {
    const result = choosePlacement(
      input({
        request: { kind: "region", region: "us-east" },
        datacenters,
        image: { version: 1, size: MiB, holdings: [{ datacenter: "us-east-d", version: 1 }] },
      }),
    );
    expect(result.decision).toEqual({ datacenter: "us-east-d", region: "us-east" });
    expect(outcomes(result)).toEqual({
      "us-east-d": "chosen",
      "us-east-c": "eligible",
      "eu-west-a": "refused",
      "us-east-a": "refused",
      "us-east-b": "refused",
    });
    expect(candidate(result, "eu-west-a").reasons).toEqual(["not in the requested region us-east"]);
    expect(candidate(result, "us-east-d").reasons[0]).toMatch(/requested region: holds the image version/);
  });

  it("without a holder takes the first by name; nothing usable means no decision", () => {
    expect(
      choosePlacement(input({ request: { kind: "region", region: "us-east" }, datacenters })).decision
        ?.datacenter,
    ).toBe("us-east-c");
    const none = choosePlacement(input({ request: { kind: "region", region: "ap-south" }, datacenters }));
    expect(none.decision).toBeNull();
    expect(none.candidates.every((c) => c.outcome === "refused")).toBe(true);
  });
});

describe("choosePlacement: no candidate", () => {
  it("no datacenters at all: no decision and an explicit summary", () => {
    const result = choosePlacement(input({ datacenters: [] }));
    expect(result).toEqual({ decision: null, candidates: [] });
    expect(summarizeRefusals(result.candidates)).toBe("no datacenter is registered");
  });

  it("summarizes every refusal on one line", () => {
    const result = choosePlacement(
      input({
        size: 2,
        datacenters: [
          dc("us-east-a", "us-east", { freeVcpus: 2 }),
          dc("eu-west-a", "eu-west", { status: "down" }),
        ],
      }),
    );
    expect(result.decision).toBeNull();
    expect(summarizeRefusals(result.candidates)).toBe(
      "eu-west-a: down; us-east-a: needs 4 vCPUs, has 2 free",
    );
  });
});

describe("placementRequestOf", () => {
  it("maps a stored policy and a region; refuses a group with neither", () => {
    expect(
      placementRequestOf({
        region: null,
        placement: {
          regions: ["eu-west"],
          strategy: "spread",
          conditions: { require_up: false, min_free_vcpus: 2, max_transfer_bytes: 10 },
        },
      }),
    ).toEqual({
      kind: "policy",
      regions: ["eu-west"],
      strategy: "spread",
      conditions: { requireUp: false, minFreeVcpus: 2, minFreeMemoryMb: undefined, maxTransferBytes: 10 },
    });
    expect(placementRequestOf({ region: "us-east", placement: null })).toEqual({
      kind: "region",
      region: "us-east",
    });
    expect(() => placementRequestOf({ region: null, placement: null })).toThrow(/region or a placement/);
  });
});
