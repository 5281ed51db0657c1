import { describe, expect, it } from "vitest";
import { datacenterStatus } from "../../api/catalog/datacenter-status.ts";
import { newId } from "../../api/ids.ts";
import { decodePageToken, encodePageToken } from "../../api/pagination.ts";
import { idSchema } from "../../schemas/common.ts";
import { WaitDurationSchema } from "../../schemas/operations.ts";
import { findReferenceCycle } from "../../schemas/vm-group-references.ts";

describe("datacenterStatus", () => {
  const now = new Date("2026-11-22T12:00:00Z");
  const ago = (s: number) => new Date(now.getTime() - s * 1000);
  it.each([
    [null, "unknown"],
    [ago(0), "up"],
    [ago(29), "up"],
    [ago(30), "degraded"],
    [ago(89), "degraded"],
    [ago(90), "down"],
  ] as const)("heartbeat %s → %s", (at, status) => {
    expect(datacenterStatus(at, now)).toBe(status);
  });
});

describe("findReferenceCycle", () => {
  it("finds a cycle through the start and none in a chain", () => {
    const graph = new Map([
      ["a", ["b"]],
      ["b", ["c"]],
      ["c", ["a"]],
      ["d", ["a"]],
    ]);
    expect(findReferenceCycle(graph, "a")).toEqual(["a", "b", "c", "a"]);
    expect(
      findReferenceCycle(
        new Map([
          ["a", ["b"]],
          ["b", ["c"]],
        ]),
        "a",
      ),
    ).toBeNull();
    expect(findReferenceCycle(new Map([["a", ["a"]]]), "a")).toEqual(["a", "a"]);
  });
});

describe("IDs and page tokens", () => {
  it("IDs match their schema and sort by creation time", () => {
    const earlier = newId("vmGroup", 1_000_000);
    const later = newId("vmGroup", 2_000_000);
    expect(idSchema("vmGroup").safeParse(earlier).success).toBe(true);
    expect(idSchema("image").safeParse(earlier).success).toBe(false);
    expect(earlier < later).toBe(true);
  });

  it("page tokens round-trip and reject IDs of another kind", () => {
    const id = newId("image");
    expect(decodePageToken(encodePageToken(id), "image")).toBe(id);
    expect(() => decodePageToken(encodePageToken(id), "vmGroup")).toThrow(/page_token/);
  });
});

describe("wait durations", () => {
  it.each([
    ["30s", 30_000],
    ["500ms", 500],
    ["1m", 60_000],
    ["5", 5_000],
  ])("%s → %d ms", (text, ms) => {
    expect(WaitDurationSchema.parse(text)).toBe(ms);
  });
  it.each(["soon", "2m", "-1s"])("refuses %s", (text) => {
    expect(WaitDurationSchema.safeParse(text).success).toBe(false);
  });
});

describe("IDs made in one millisecond", () => {
  it("still sort in the order they were made", () => {
    const ids = Array.from({ length: 50 }, () => newId("instance", 5_000_000));
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(50);
  });
});
