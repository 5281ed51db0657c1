// globalvm_image's lifecycle settings: `family`, `members`, `current_version` (a rollback
// pins it; leaving it out follows the newest active version) and `deprecation` blocks, one
// per version whose state the configuration manages. How each is planned, applied and read
// back, so that a plan straight after an apply is empty.
//
// A `deprecation` block's `state` is the state set by hand (null: active); `deprecate_at` and
// `obsolete_at` move the version on by themselves when their time comes, and a state reached
// that way is no drift. Versions no block names are left as they are; removing a block makes
// its version active again with no times.

import { expectData, type ImageVersionDetail, type Schemas } from "../../client/api.ts";
import {
  type Attribute,
  type AttributePath,
  type CallContext,
  CtyNumber,
  type CtyValue,
  type Diagnostics,
  isUnknown,
  type NestedBlock,
  type ObjectValue,
  unknown,
  valuesEqual,
} from "../index.ts";
import type { GlobalvmProviderData } from "../provider-data.ts";
import { stringSet } from "./values.ts";

export const VERSION_STATES = ["active", "deprecated", "obsolete"] as const;
type VersionState = ImageVersionDetail["state"];
const RANK: Record<VersionState, number> = { active: 0, deprecated: 1, obsolete: 2, deleted: 3 };

export const lifecycleAttributes = {
  family: {
    type: "string",
    optional: true,
    description:
      "The image family: `globalvm_image` data sources and VM groups naming it use the family's newest active image.",
  },
  members: {
    type: ["set", "string"],
    default: [],
    description: "Project ids the image is shared with, read-only (they can boot it, never change it).",
  },
  current_version: {
    type: "number",
    optional: true,
    computed: true,
    description:
      "The version VM groups following the image run. Set, it pins that version (an older one rolls the groups back, one instance at a time; new uploads do not move it). Left out, the image follows its newest active version, and a version pinned earlier is let go.",
  },
  pinned_version: {
    type: "number",
    computed: true,
    description:
      "The version `current_version` pins, or null when the image follows its newest active version.",
  },
} satisfies Record<string, Attribute>;

export const deprecationBlock: NestedBlock = {
  nesting: "list",
  description:
    "The lifecycle of one version, one block per version managed: `state` is set now (null: active), `deprecate_at` / `obsolete_at` (RFC 3339 times) move the version on by themselves. Deprecated versions still boot but groups following the image or its family skip them; obsolete ones are refused for new instances. Versions no block names are left as they are; removing a block makes its version active again with no times. The versions themselves are in the `globalvm_image_versions` data source.",
  attributes: {
    version: { type: "number", required: true, description: "The version number (1 is the first upload)." },
    state: {
      type: "string",
      optional: true,
      description: "active, deprecated or obsolete, set now. Null: active (until a time below passes).",
    },
    deprecate_at: { type: "string", optional: true, description: "When the version becomes deprecated." },
    obsolete_at: { type: "string", optional: true, description: "When the version becomes obsolete." },
    effective_state: {
      type: "string",
      computed: true,
      description: "The version's state now, scheduled moves included (deleted once the version is deleted).",
    },
  },
};

const isObject = (value: CtyValue | undefined): value is ObjectValue =>
  !!value &&
  typeof value === "object" &&
  !Array.isArray(value) &&
  !(value instanceof CtyNumber) &&
  !isUnknown(value);

const entriesOf = (value: CtyValue | undefined): ObjectValue[] =>
  Array.isArray(value) ? value.filter(isObject) : [];

const versionOf = (entry: ObjectValue): number | undefined =>
  entry.version instanceof CtyNumber ? entry.version.toNumber() : undefined;

const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;
const instant = (value: CtyValue | undefined): number | undefined =>
  typeof value === "string" && TIME.test(value) ? Date.parse(value) : undefined;
/** A configured time as the API takes it (UTC, with milliseconds). */
const isoOf = (value: CtyValue | undefined): string | null => {
  const at = instant(value);
  return at === undefined || Number.isNaN(at) ? null : new Date(at).toISOString();
};

export function validateLifecycle(config: ObjectValue, diagnostics: Diagnostics): void {
  const pin = config.current_version;
  if (pin instanceof CtyNumber && !(Number.isInteger(pin.toNumber()) && pin.toNumber() >= 1)) {
    diagnostics.error("Invalid current_version", "current_version is a version number: 1, 2, …", [
      "current_version",
    ]);
  }
  const seen = new Set<number>();
  entriesOf(config.deprecation).forEach((entry, index) => {
    const at = (name: string): AttributePath => ["deprecation", index, name];
    const version = versionOf(entry);
    if (version !== undefined) {
      if (!Number.isInteger(version) || version < 1) {
        diagnostics.error("Invalid version", "version is a version number: 1, 2, …", at("version"));
      } else if (seen.has(version)) {
        diagnostics.error(
          "Duplicate deprecation",
          `Version ${version} has more than one block.`,
          at("version"),
        );
      }
      seen.add(version);
    }
    const state = entry.state;
    if (typeof state === "string" && !(VERSION_STATES as readonly string[]).includes(state)) {
      diagnostics.error(
        "Invalid state",
        `state must be active, deprecated or obsolete, not ${state} (delete a version with the CLI or the API).`,
        at("state"),
      );
    }
    for (const name of ["deprecate_at", "obsolete_at"]) {
      const text = entry[name];
      if (typeof text === "string" && Number.isNaN(instant(text) ?? Number.NaN)) {
        diagnostics.error(
          "Invalid time",
          `${JSON.stringify(text)} is not an RFC 3339 time like "2027-01-31T00:00:00Z".`,
          at(name),
        );
      }
    }
    const deprecateAt = instant(entry.deprecate_at);
    const obsoleteAt = instant(entry.obsolete_at);
    if (deprecateAt !== undefined && obsoleteAt !== undefined && deprecateAt > obsoleteAt) {
      diagnostics.error("Invalid times", "deprecate_at must not be after obsolete_at.", at("obsolete_at"));
    }
    if (
      state === "obsolete" &&
      version !== undefined &&
      pin instanceof CtyNumber &&
      pin.toNumber() === version
    ) {
      diagnostics.error(
        "Obsolete current_version",
        `Version ${version} is current_version: pin another version before making it obsolete.`,
        at("state"),
      );
    }
  });
}

/** Whether two blocks ask for the same thing of the same version. */
function sameEntry(a: ObjectValue, b: ObjectValue): boolean {
  return (
    valuesEqual("number", a.version ?? null, b.version ?? null) &&
    (a.state ?? null) === (b.state ?? null) &&
    instant(a.deprecate_at) === instant(b.deprecate_at) &&
    instant(a.obsolete_at) === instant(b.obsolete_at)
  );
}

/**
 * Plans `pinned_version` (what the configuration's `current_version` pins, null when left
 * out), `current_version` and `version` (known while nothing moves them: an upload, a pin
 * changed or let go, or a deprecation changed move a followed image), and the blocks'
 * `effective_state` (kept for unchanged blocks). Answers whether the current version may move.
 */
export function planLifecycle(
  config: ObjectValue,
  prior: ObjectValue | null,
  planned: ObjectValue,
  sameBytes: boolean,
): { moves: boolean } {
  planned.pinned_version = config.current_version ?? null;
  const priorEntries = entriesOf(prior?.deprecation);
  const plannedEntries = entriesOf(planned.deprecation);
  let deprecationChanged = priorEntries.length !== plannedEntries.length;
  for (const entry of plannedEntries) {
    const before = priorEntries.find((p) => valuesEqual("number", p.version ?? null, entry.version ?? null));
    if (before && sameEntry(entry, before) && typeof before.effective_state === "string") {
      entry.effective_state = before.effective_state;
    } else {
      entry.effective_state = unknown;
      deprecationChanged = true;
    }
  }
  if (!prior) return { moves: true };
  const pinChanges = !valuesEqual("number", planned.pinned_version, prior.pinned_version ?? null);
  const current =
    (config.current_version ?? null) !== null
      ? (config.current_version ?? null)
      : pinChanges || !sameBytes || deprecationChanged
        ? unknown
        : (prior.current_version ?? unknown);
  planned.current_version = current;
  planned.version = current;
  return {
    moves: !(current instanceof CtyNumber) || !valuesEqual("number", current, prior.current_version ?? null),
  };
}

/** The image's versions, newest first (none when it is gone). */
export async function listVersions(
  context: CallContext<GlobalvmProviderData>,
  id: string,
): Promise<ImageVersionDetail[]> {
  const result = await context.providerData.api.GET("/v1/images/{id}/versions", {
    params: { path: { id } },
    signal: context.signal,
  });
  if (result.response.status === 404) return [];
  return expectData("Listing the image's versions", result).items;
}

/** The digest of the newest version not deleted: what the last upload holds. */
export function newestDigest(versions: readonly ImageVersionDetail[]): string | null {
  return (
    [...versions].sort((a, b) => b.version - a.version).find((v) => v.state !== "deleted")?.digest ?? null
  );
}

const passed = (text: string | null, now: number) => text !== null && Date.parse(text) <= now;

/** Whether a passed `deprecate_at` / `obsolete_at` explains the version's state. */
function scheduled(detail: ImageVersionDetail, now: number): boolean {
  return (
    (detail.state === "deprecated" && passed(detail.deprecate_at, now)) ||
    (detail.state === "obsolete" && passed(detail.obsolete_at, now))
  );
}

/** A time as the API answered it, or the state's own text when it is the same instant. */
const sameTime = (mine: CtyValue | undefined, theirs: string | null): string | null =>
  theirs !== null && typeof mine === "string" && instant(mine) === Date.parse(theirs) ? mine : theirs;

/**
 * The `deprecation` blocks as the API shows them: each block's version refreshed (a state
 * changed by hand elsewhere shows, one reached by a passed time does not). `imported`: a
 * state straight from `terraform import`, which gets a block for each version whose lifecycle
 * is not plain active.
 */
export function readDeprecations(
  state: ObjectValue,
  versions: readonly ImageVersionDetail[],
  imported: boolean,
): ObjectValue[] {
  const now = Date.now();
  const entries = entriesOf(state.deprecation);
  if (imported && entries.length === 0) {
    return versions
      .filter((v) => v.state !== "deleted" && (v.state !== "active" || v.deprecate_at || v.obsolete_at))
      .sort((a, b) => a.version - b.version)
      .map((v) => ({
        version: new CtyNumber(v.version),
        state: v.state === "active" || scheduled(v, now) ? null : v.state,
        deprecate_at: v.deprecate_at,
        obsolete_at: v.obsolete_at,
        effective_state: v.state,
      }));
  }
  return entries.map((entry) => {
    const detail = versions.find((v) => v.version === versionOf(entry));
    if (!detail) return entry;
    if (detail.state === "deleted") return { ...entry, effective_state: "deleted" };
    const declared = ((entry.state as string | null) ?? "active") as VersionState;
    const kept = detail.state === declared || (RANK[detail.state] > RANK[declared] && scheduled(detail, now));
    return {
      ...entry,
      state: kept ? (entry.state ?? null) : detail.state,
      deprecate_at: sameTime(entry.deprecate_at, detail.deprecate_at),
      obsolete_at: sameTime(entry.obsolete_at, detail.obsolete_at),
      effective_state: detail.state,
    };
  });
}

type UpdateImage = Partial<Schemas["UpdateImage"]>;
type VersionChange = {
  version: number;
  body: Schemas["UpdateImageVersion"];
  path: AttributePath | undefined;
  /** Makes the version obsolete: after a pin moves off it. */
  late: boolean;
};

/** What the image's PATCH must change of family, members and the pinned version. */
export function lifecyclePatch(plan: ObjectValue, prior: ObjectValue | null): UpdateImage {
  const body: UpdateImage = {};
  if ((plan.family ?? null) !== (prior?.family ?? null)) body.family = (plan.family as string | null) ?? null;
  if (!valuesEqual(["set", "string"], plan.members ?? null, prior?.members ?? [])) {
    body.members = stringSet(plan.members);
  }
  if (!valuesEqual("number", plan.pinned_version ?? null, prior?.pinned_version ?? null)) {
    body.current_version = plan.pinned_version instanceof CtyNumber ? plan.pinned_version.toNumber() : null;
  }
  return body;
}

function versionChanges(plan: ObjectValue, prior: ObjectValue | null): VersionChange[] {
  const planned = entriesOf(plan.deprecation);
  const before = entriesOf(prior?.deprecation);
  const now = Date.now();
  const changes: VersionChange[] = [];
  planned.forEach((entry, index) => {
    const version = versionOf(entry);
    if (version === undefined) return;
    const was = before.find((p) => versionOf(p) === version);
    if (was && sameEntry(entry, was) && entry.effective_state === was.effective_state) return;
    const obsoleteAt = isoOf(entry.obsolete_at);
    changes.push({
      version,
      body: {
        state: ((entry.state as string | null) ?? "active") as "active",
        deprecate_at: isoOf(entry.deprecate_at),
        obsolete_at: obsoleteAt,
      },
      path: ["deprecation", index],
      late: entry.state === "obsolete" || passed(obsoleteAt, now),
    });
  });
  for (const entry of before) {
    const version = versionOf(entry);
    if (version === undefined || planned.some((p) => versionOf(p) === version)) continue;
    changes.push({
      version,
      body: { state: "active", deprecate_at: null, obsolete_at: null },
      path: undefined,
      late: false,
    });
  }
  return changes;
}

async function patchVersions(
  context: CallContext<GlobalvmProviderData>,
  id: string,
  changes: VersionChange[],
  versions: readonly ImageVersionDetail[],
): Promise<void> {
  for (const change of changes) {
    if (versions.find((v) => v.version === change.version)?.state === "deleted") {
      context.log.warn("version is deleted: its deprecation block changes nothing", {
        version: change.version,
      });
      continue;
    }
    context.log.info("setting a version's lifecycle", { image: id, version: change.version, ...change.body });
    const result = await context.providerData.api.PATCH("/v1/images/{id}/versions/{version}", {
      params: { path: { id, version: change.version } },
      body: change.body,
      signal: context.signal,
    });
    expectData(`Setting the lifecycle of version ${change.version}`, result, (path) =>
      change.path ? [...change.path, ...path.slice(0, 1)] : [],
    );
  }
}

/**
 * Applies the lifecycle and `base` (labels, replicate_to) to the image in an order the
 * control plane accepts: versions made bootable first (a new pin may name one), then the
 * image's PATCH (the pin), then versions made obsolete (the pin has moved off them).
 * Answers the PATCH's operation, when it started one.
 */
export async function applyLifecycle(
  context: CallContext<GlobalvmProviderData>,
  id: string,
  plan: ObjectValue,
  prior: ObjectValue | null,
  base: UpdateImage,
): Promise<string | undefined> {
  const changes = versionChanges(plan, prior);
  const versions = changes.length > 0 ? await listVersions(context, id) : [];
  await patchVersions(
    context,
    id,
    changes.filter((c) => !c.late),
    versions,
  );
  let operationId: string | undefined;
  const body = { ...base, ...lifecyclePatch(plan, prior) };
  if (Object.keys(body).length > 0) {
    const result = await context.providerData.api.PATCH("/v1/images/{id}", {
      params: { path: { id } },
      body,
      signal: context.signal,
    });
    expectData("Updating the image", result, (path) => path.slice(0, 1));
    operationId = result.response.headers.get("x-operation-id") ?? undefined;
  }
  await patchVersions(
    context,
    id,
    changes.filter((c) => c.late),
    versions,
  );
  return operationId;
}

/** The planned blocks with each `effective_state` known (read back when the apply changed it). */
export async function appliedDeprecations(
  context: CallContext<GlobalvmProviderData>,
  id: string,
  plan: ObjectValue,
): Promise<ObjectValue[]> {
  const entries = entriesOf(plan.deprecation);
  if (!entries.some((e) => isUnknown(e.effective_state))) return entries;
  const versions = await listVersions(context, id);
  return entries.map((entry) =>
    isUnknown(entry.effective_state)
      ? {
          ...entry,
          effective_state: versions.find((v) => v.version === versionOf(entry))?.state ?? "active",
        }
      : entry,
  );
}
