// The decisions of an image version's lifecycle, as plain functions over catalog rows: what
// state a version is in at a time (its scheduled times count once passed), which version
// groups that follow the image run, and which image a family names.
import type { VersionState } from "../../schemas/image-versions.ts";

export interface VersionLifecycle {
  version: number;
  state: string;
  deprecateAt: Date | null;
  obsoleteAt: Date | null;
}

const RANK: Record<VersionState, number> = { active: 0, deprecated: 1, obsolete: 2, deleted: 3 };

/** The version's state at `now`: a scheduled time that has passed moves it on, never back. */
export function versionStateAt(row: VersionLifecycle, now: Date): VersionState {
  let state = row.state as VersionState;
  const advance = (to: VersionState, at: Date | null) => {
    if (at && at.getTime() <= now.getTime() && RANK[to] > RANK[state]) state = to;
  };
  advance("deprecated", row.deprecateAt);
  advance("obsolete", row.obsoleteAt);
  return state;
}

/** Whether new instances may boot the version: active and deprecated ones may. */
export function isBootable(state: VersionState): boolean {
  return state === "active" || state === "deprecated";
}

/**
 * The version groups following the image run: the pinned one while it may boot, else the
 * newest active one, else (every version deprecated) the newest deprecated one, so an image
 * whose versions are all deprecated still boots; null when no version may boot.
 */
export function currentVersionOf(
  versions: readonly VersionLifecycle[],
  pinned: number | null,
  now: Date,
): number | null {
  const states = versions.map((v) => ({ version: v.version, state: versionStateAt(v, now) }));
  const pin = states.find((v) => v.version === pinned);
  if (pin && isBootable(pin.state)) return pin.version;
  const newest = (state: VersionState) =>
    states
      .filter((v) => v.state === state)
      .reduce<number | null>((m, v) => Math.max(m ?? 0, v.version), null);
  return newest("active") ?? newest("deprecated");
}

export interface FamilyCandidate {
  id: string;
  /** When the image's current version was uploaded; null when it has none. */
  currentCreatedAt: Date | null;
  /** The state of its current version at the time asked. */
  currentState: VersionState | null;
}

/**
 * The image a family names (GCE's semantics): the one whose current version is active and the
 * newest; when none is active, the newest deprecated one; null when no image of it can boot.
 */
export function familyImageOf(candidates: readonly FamilyCandidate[]): string | null {
  const newest = (state: VersionState) =>
    candidates
      .filter((c) => c.currentState === state && c.currentCreatedAt)
      .sort(
        (a, b) =>
          (b.currentCreatedAt?.getTime() ?? 0) - (a.currentCreatedAt?.getTime() ?? 0) ||
          b.id.localeCompare(a.id),
      )[0]?.id ?? null;
  return newest("active") ?? newest("deprecated");
}
