// The lifecycle's decisions as plain functions: a version's state at a time, the current
// version of an image, and the image a family names.
import { describe, expect, it } from "vitest";
import { currentVersionOf, familyImageOf, versionStateAt } from "../../api/catalog/version-rules.ts";

const at = (minutes: number) => new Date(Date.UTC(2026, 11, 4, 12, minutes));
const v = (version: number, state = "active", times: { deprecateAt?: Date; obsoleteAt?: Date } = {}) => ({
  version,
  state,
  deprecateAt: times.deprecateAt ?? null,
  obsoleteAt: times.obsoleteAt ?? null,
});

describe("versionStateAt", () => {
  it("moves a version on once a scheduled time has passed, never back", () => {
    const row = v(1, "active", { deprecateAt: at(10), obsoleteAt: at(20) });
    expect(versionStateAt(row, at(9))).toBe("active");
    expect(versionStateAt(row, at(10))).toBe("deprecated");
    expect(versionStateAt(row, at(25))).toBe("obsolete");
    expect(versionStateAt(v(1, "obsolete", { deprecateAt: at(10) }), at(30))).toBe("obsolete");
    expect(versionStateAt(v(1, "deleted", { obsoleteAt: at(0) }), at(30))).toBe("deleted");
  });
});

describe("currentVersionOf", () => {
  it("is the newest active version unless one is pinned", () => {
    expect(currentVersionOf([v(1), v(2), v(3)], null, at(0))).toBe(3);
    expect(currentVersionOf([v(1), v(2), v(3, "deprecated")], null, at(0))).toBe(2);
    expect(currentVersionOf([v(1), v(2), v(3)], 1, at(0))).toBe(1);
    // A pinned version may be deprecated (it still boots), not obsolete.
    expect(currentVersionOf([v(1, "deprecated"), v(2)], 1, at(0))).toBe(1);
    expect(currentVersionOf([v(1, "obsolete"), v(2)], 1, at(0))).toBe(2);
  });

  it("falls back to the newest deprecated version, and to none when nothing may boot", () => {
    expect(currentVersionOf([v(1, "deprecated"), v(2, "deprecated"), v(3, "obsolete")], null, at(0))).toBe(2);
    expect(currentVersionOf([v(1, "obsolete"), v(2, "deleted")], null, at(0))).toBeNull();
    expect(currentVersionOf([], null, at(0))).toBeNull();
  });

  it("counts scheduled times at the moment asked", () => {
    const versions = [v(1), v(2, "active", { deprecateAt: at(10) })];
    expect(currentVersionOf(versions, null, at(5))).toBe(2);
    expect(currentVersionOf(versions, null, at(15))).toBe(1);
  });
});

describe("familyImageOf", () => {
  it("names the image whose active current version is newest, else the newest deprecated one", () => {
    const candidates = [
      { id: "img_a", currentCreatedAt: at(1), currentState: "active" as const },
      { id: "img_b", currentCreatedAt: at(5), currentState: "deprecated" as const },
      { id: "img_c", currentCreatedAt: at(3), currentState: "active" as const },
      { id: "img_d", currentCreatedAt: null, currentState: null },
    ];
    expect(familyImageOf(candidates)).toBe("img_c");
    expect(familyImageOf(candidates.filter((c) => c.id !== "img_a" && c.id !== "img_c"))).toBe("img_b");
    expect(familyImageOf([{ id: "img_d", currentCreatedAt: null, currentState: null }])).toBeNull();
  });
});
