// The decisions behind replication: where a version goes (planDistribution) and which
// replicas are collected (collectableReplicas), as plain functions.
import { describe, expect, it } from "vitest";
import { mayFetchSources, mayReport, replicaKey } from "../../api/catalog/replicas.ts";
import {
  type CollectionCandidate,
  collectableReplicas,
  planDistribution,
  policyGaps,
  replicaIdleSecondsFrom,
} from "../../api/orchestrator/images/plans.ts";

const datacenters = [
  { name: "eu-west-a", region: "eu-west", up: true },
  { name: "us-east-a", region: "us-east", up: true },
  { name: "us-east-b", region: "us-east", up: true },
  { name: "ap-south-a", region: "ap-south", up: true },
  { name: "sa-east-a", region: "sa-east", up: false },
];
const replica = (datacenter: string, version: number, state = "available", onDemand = false) => ({
  datacenter,
  version,
  state,
  onDemand,
});

describe("planDistribution", () => {
  it("sends the current version to one datacenter per policy region and to every holder of an older one", () => {
    const plan = planDistribution({
      originRegion: "eu-west",
      replicateTo: ["us-east", "sa-east"],
      version: 2,
      datacenters,
      replicas: [
        replica("eu-west-a", 1),
        replica("eu-west-a", 2),
        replica("us-east-b", 1),
        replica("ap-south-a", 1, "available", true),
      ],
      inUse: () => false,
    });
    // us-east-b already holds version 1: the delta goes there, not to us-east-a.
    expect(plan.pulls).toEqual([
      { datacenter: "ap-south-a", onDemand: true },
      { datacenter: "us-east-b", onDemand: false },
    ]);
    // sa-east's only datacenter is down.
    expect(plan.unplacedRegions).toEqual(["sa-east"]);
    expect(plan.drops).toEqual([]);
  });

  it("lets a policy copy go when its region leaves the policy, unless a group uses it", () => {
    const plan = planDistribution({
      originRegion: "eu-west",
      replicateTo: [],
      version: 1,
      datacenters,
      replicas: [
        replica("eu-west-a", 1),
        replica("us-east-a", 1),
        replica("ap-south-a", 1),
        replica("ap-south-a", 0, "available", true),
      ],
      inUse: (dc) => dc === "ap-south-a",
    });
    expect(plan.drops).toEqual([{ datacenter: "us-east-a", version: 1 }]);
    expect(plan.released).toEqual([{ datacenter: "ap-south-a", version: 1 }]);
    // A copy going now does not count as a holder to update.
    expect(plan.pulls).toEqual([]);
  });

  it("does nothing when every target already holds the version", () => {
    const plan = planDistribution({
      originRegion: "eu-west",
      replicateTo: ["us-east"],
      version: 1,
      datacenters,
      replicas: [replica("eu-west-a", 1), replica("us-east-a", 1)],
      inUse: () => false,
    });
    expect(plan).toEqual({ pulls: [], unplacedRegions: [], drops: [], released: [] });
  });
});

describe("collectableReplicas", () => {
  const now = new Date("2026-01-01T12:00:00Z");
  const ago = (seconds: number) => new Date(now.getTime() - seconds * 1000);
  const candidate = (over: Partial<CollectionCandidate>): CollectionCandidate => ({
    imageId: "img_1",
    version: 1,
    datacenter: "us-east-a",
    region: "us-east",
    state: "available",
    lastUsedAt: null,
    updatedAt: ago(600),
    ...over,
  });
  const images = new Map([
    ["img_1", { originRegion: "eu-west", replicateTo: ["ap-south"], currentVersion: 2 }],
  ]);
  const origin = [
    candidate({ datacenter: "eu-west-a", region: "eu-west" }),
    candidate({ datacenter: "eu-west-a", region: "eu-west", version: 2 }),
  ];
  const collect = (replicas: CollectionCandidate[], inUse: string[] = []) =>
    collectableReplicas({
      images,
      replicas: [...origin, ...replicas],
      inUse: new Set(inUse),
      now,
      idleMs: 60_000,
    }).map((r) => `${r.datacenter}@${r.version}`);

  it("collects an idle copy outside the policy, and an old version in a policy region", () => {
    expect(collect([candidate({}), candidate({ datacenter: "ap-south-a", region: "ap-south" })])).toEqual([
      "us-east-a@1",
      "ap-south-a@1",
    ]);
  });

  it("never collects a copy in use, recently used, the policy's current version, or the origin's", () => {
    expect(collect([candidate({})], [replicaKey("img_1", 1, "us-east-a")])).toEqual([]);
    expect(collect([candidate({ lastUsedAt: ago(30) })])).toEqual([]);
    expect(collect([candidate({ datacenter: "ap-south-a", region: "ap-south", version: 2 })])).toEqual([]);
    expect(collect([])).toEqual([]);
  });

  it("never collects the last available copy of a version, nor the base of a delta still arriving", () => {
    const orphan = collectableReplicas({
      images: new Map([["img_1", { originRegion: "eu-west", replicateTo: [], currentVersion: 1 }]]),
      replicas: [candidate({})],
      inUse: new Set(),
      now,
      idleMs: 60_000,
    });
    expect(orphan).toEqual([]);
    expect(collect([candidate({}), candidate({ version: 2, state: "transferring" })])).toEqual([]);
  });
});

describe("collectableReplicas after a crash", () => {
  it("finishes a drop left stale without waiting for the idle time, but not while a group uses it", () => {
    const now = new Date();
    const stale = {
      imageId: "img_1",
      version: 1,
      datacenter: "us-east-a",
      region: "us-east",
      state: "stale",
      lastUsedAt: null,
      updatedAt: now,
    };
    const images = new Map([["img_1", { originRegion: "eu-west", replicateTo: [], currentVersion: 1 }]]);
    const run = (inUse: string[]) =>
      collectableReplicas({ images, replicas: [stale], inUse: new Set(inUse), now, idleMs: 60_000 }).length;
    expect(run([])).toBe(1);
    expect(run([replicaKey("img_1", 1, "us-east-a")])).toBe(0);
  });
});

describe("policyGaps", () => {
  const image = {
    id: "img_1",
    originRegion: "eu-west",
    replicateTo: ["us-east", "ap-south"],
    currentVersion: 2,
  };
  const held = (region: string, state = "available", version = 2) => ({
    imageId: "img_1",
    version,
    region,
    state,
  });

  it("finds a live policy region without the current version, even if it holds an older one", () => {
    const gaps = policyGaps({
      images: [image],
      replicas: [held("us-east"), held("ap-south", "available", 1)],
      liveRegions: new Set(["eu-west", "us-east", "ap-south"]),
    });
    expect(gaps).toEqual(["img_1"]);
  });

  it("ignores a copy on its way, a failed copy in a region with no live datacenter, and unuploaded images", () => {
    expect(
      policyGaps({
        images: [image, { ...image, id: "img_2", currentVersion: null }],
        replicas: [held("us-east", "transferring"), held("ap-south", "failed")],
        liveRegions: new Set(["eu-west", "us-east"]),
      }),
    ).toEqual([]);
  });
});

describe("replicaIdleSecondsFrom", () => {
  it("reads GLOBALVM_REPLICA_IDLE_SECONDS, defaults to an hour, and names the variable when it is wrong", () => {
    expect(replicaIdleSecondsFrom({})).toBe(3600);
    expect(replicaIdleSecondsFrom({ GLOBALVM_REPLICA_IDLE_SECONDS: "2.5" })).toBe(2.5);
    expect(() => replicaIdleSecondsFrom({ GLOBALVM_REPLICA_IDLE_SECONDS: "soon" })).toThrow(
      /GLOBALVM_REPLICA_IDLE_SECONDS must be a positive number/,
    );
  });
});

describe("what a manager may do with an image version", () => {
  const business = (replica: string | undefined, booted = false) => ({ replica, booted });

  it("fetches sources only for a pull it was asked to make or an instance it boots", () => {
    expect(mayFetchSources(business("pending"))).toBe(true);
    expect(mayFetchSources(business("transferring"))).toBe(true);
    expect(mayFetchSources(business(undefined, true))).toBe(true);
    // Held, failed (asked again through pending) or being dropped: nothing to pull.
    for (const state of [undefined, "available", "failed", "stale"])
      expect(mayFetchSources(business(state))).toBe(false);
  });

  it("reports only where the catalog expects a copy, or an upload to the origin region", () => {
    expect(mayReport(business("stale"), { state: "failed" }, false)).toBe(true);
    expect(mayReport(business(undefined, true), { state: "transferring" }, false)).toBe(true);
    expect(mayReport(business(undefined), { state: "available" }, true)).toBe(true);
    expect(mayReport(business(undefined), { state: "transferring" }, true)).toBe(false);
    expect(mayReport(business(undefined), { state: "available" }, false)).toBe(false);
  });
});
