// globalvm_image's lifecycle as plain functions: what a plan says of current_version,
// pinned_version and the deprecation blocks, what a refresh reads back (a state reached by a
// scheduled time is no drift, one set by hand elsewhere is), and the checks of a configuration.

import { describe, expect, it } from "vitest";
import type { ImageVersionDetail } from "../../client/api.ts";
import { CtyNumber, Diagnostics, isUnknown, type ObjectValue } from "../../provider/index.ts";
import {
  lifecyclePatch,
  planLifecycle,
  readDeprecations,
  validateLifecycle,
} from "../../provider/resources/image-lifecycle.ts";

const n = (value: number) => new CtyNumber(value);
const entry = (version: number, fields: ObjectValue = {}): ObjectValue => ({
  version: n(version),
  state: null,
  deprecate_at: null,
  obsolete_at: null,
  ...fields,
});
const prior = (fields: ObjectValue = {}): ObjectValue => ({
  current_version: n(2),
  version: n(2),
  pinned_version: null,
  family: null,
  members: [],
  deprecation: [],
  ...fields,
});
const version = (v: number, fields: Partial<ImageVersionDetail> = {}): ImageVersionDetail => ({
  version: v,
  size: 10,
  digest: `sha256:${String(v).repeat(64)}`,
  chunk_count: 1,
  created_at: "2026-01-01T00:00:00.000Z",
  state: "active",
  deprecate_at: null,
  obsolete_at: null,
  current: false,
  replicas: [],
  ...fields,
});

describe("planning current_version", () => {
  it("keeps the prior value when nothing moves it", () => {
    const planned = prior();
    const { moves } = planLifecycle({ current_version: null, deprecation: [] }, prior(), planned, true);
    expect(moves).toBe(false);
    expect(planned.current_version).toEqual(n(2));
    expect(planned.pinned_version).toBeNull();
  });

  it("is unknown when a new upload, an un-pin or a changed deprecation moves a followed image", () => {
    const upload = prior();
    expect(planLifecycle({ current_version: null, deprecation: [] }, prior(), upload, false).moves).toBe(
      true,
    );
    expect(isUnknown(upload.current_version)).toBe(true);

    const unpin = prior({ pinned_version: n(1), current_version: n(1) });
    planLifecycle({ current_version: null, deprecation: [] }, prior({ pinned_version: n(1) }), unpin, true);
    expect(unpin.pinned_version).toBeNull();
    expect(isUnknown(unpin.current_version)).toBe(true);

    const deprecate = prior({ deprecation: [entry(2, { state: "deprecated" })] });
    planLifecycle({ current_version: null }, prior(), deprecate, true);
    expect(isUnknown(deprecate.current_version)).toBe(true);
    expect(isUnknown((deprecate.deprecation as ObjectValue[])[0]?.effective_state)).toBe(true);
  });

  it("is the configured pin, which an upload does not move", () => {
    const planned = prior({ current_version: n(1) });
    const was = prior({ current_version: n(1), version: n(1), pinned_version: n(1) });
    const { moves } = planLifecycle({ current_version: n(1) }, was, planned, false);
    expect(moves).toBe(false);
    expect(planned.version).toEqual(n(1));
    expect(planned.pinned_version).toEqual(n(1));
    expect(lifecyclePatch(planned, was)).toEqual({});
    expect(lifecyclePatch(planned, prior())).toEqual({ current_version: 1 });
    expect(lifecyclePatch({ ...prior(), family: "f", members: ["prj_x"] }, prior())).toEqual({
      family: "f",
      members: ["prj_x"],
    });
  });
});

describe("reading deprecation blocks back", () => {
  const now = Date.now();
  const past = new Date(now - 60_000).toISOString();
  const future = new Date(now + 3_600_000).toISOString();

  it("shows a state set by hand elsewhere, not one a passed time reached", () => {
    const state = {
      source: "disk.raw",
      deprecation: [
        entry(1, { state: "deprecated", obsolete_at: past.replace(".000Z", "Z") }),
        entry(2),
        entry(3, { deprecate_at: future }),
      ],
    };
    const read = readDeprecations(
      state,
      [
        version(1, { state: "obsolete", obsolete_at: past }),
        version(2, { state: "deprecated" }),
        version(3, { state: "active", deprecate_at: future }),
      ],
      false,
    );
    expect(read).toEqual([
      entry(1, { state: "deprecated", obsolete_at: past.replace(".000Z", "Z"), effective_state: "obsolete" }),
      entry(2, { state: "deprecated", effective_state: "deprecated" }),
      entry(3, { deprecate_at: future, effective_state: "active" }),
    ]);
  });

  it("gives an imported image a block for each version whose lifecycle is not plain active", () => {
    const read = readDeprecations(
      { source: null, deprecation: [] },
      [
        version(3),
        version(2, { state: "deprecated", deprecate_at: past }),
        version(1, { state: "obsolete" }),
      ],
      true,
    );
    expect(read).toEqual([
      entry(1, { state: "obsolete", effective_state: "obsolete" }),
      entry(2, { deprecate_at: past, effective_state: "deprecated" }),
    ]);
  });
});

describe("checking a configuration", () => {
  it("refuses repeated versions, unknown states, bad times and an obsolete pin", () => {
    const diagnostics = new Diagnostics();
    validateLifecycle(
      {
        current_version: n(1),
        deprecation: [
          entry(1, { state: "obsolete" }),
          entry(1),
          entry(2, { state: "gone", deprecate_at: "tomorrow" }),
          entry(3, { deprecate_at: "2030-01-02T00:00:00Z", obsolete_at: "2030-01-01T00:00:00Z" }),
        ],
      },
      diagnostics,
    );
    expect(diagnostics.items.map((d) => d.summary)).toEqual([
      "Obsolete current_version",
      "Duplicate deprecation",
      "Invalid state",
      "Invalid time",
      "Invalid times",
    ]);
  });
});
