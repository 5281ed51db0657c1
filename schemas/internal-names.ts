// Internal names: what a guest's DNS resolver is answered about the project it runs in. An
// instance is INSTANCE.GROUP.REGION.PROJECT.globalvm.internal (its address on the group's
// network); a group is GROUP.REGION.PROJECT.globalvm.internal (its ready instances). The control
// plane writes an instance's own name into its spec (its metadata `instance/hostname`) and
// resolves names for managers; a manager answers its guests' queries. Both sides read the same
// names through this module.
import { z } from "@hono/zod-openapi";

export const INTERNAL_ZONE = "globalvm.internal";

/** Seconds a guest may keep an answer: group membership follows readiness, so keep it short. */
export const INTERNAL_NAME_TTL_SECONDS = 5;

export interface InternalName {
  project: string;
  region: string;
  group: string;
  /** Absent: the name is the group's. */
  instance?: string;
}

// A DNS label as names here are made (NameSchema, and instance names GROUP-ORDINAL).
const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** The name of an instance or (without `instance`) of a group. */
export function internalName(name: InternalName): string {
  return [name.instance, name.group, name.region, name.project, INTERNAL_ZONE]
    .filter((label) => label !== undefined)
    .join(".");
}

/** `PROJECT.globalvm.internal`: the part of the zone a project's guests may ask about. */
export function projectZone(project: string): string {
  return `${project}.${INTERNAL_ZONE}`;
}

/** Lowercase, without the root's trailing dot: names compare as DNS compares them. */
export function canonicalName(name: string): string {
  return name.toLowerCase().replace(/\.$/, "");
}

/** The parts of an internal name, or undefined for a name that is not one. */
export function parseInternalName(name: string): InternalName | undefined {
  const canonical = canonicalName(name);
  const suffix = `.${INTERNAL_ZONE}`;
  if (!canonical.endsWith(suffix)) return undefined;
  const labels = canonical.slice(0, -suffix.length).split(".");
  if (!labels.every((label) => LABEL.test(label))) return undefined;
  if (labels.length === 3) {
    const [group, region, project] = labels as [string, string, string];
    return { project, region, group };
  }
  if (labels.length === 4) {
    const [instance, group, region, project] = labels as [string, string, string, string];
    return { project, region, group, instance };
  }
  return undefined;
}

/** Whether `name` is `zone` or lies under it. */
export function isWithinZone(name: string, zone: string): boolean {
  const canonical = canonicalName(name);
  return canonical === zone || canonical.endsWith(`.${zone}`);
}

/** What the control plane answers a manager asking about a name for one of its instances. */
export const InternalNameAnswerSchema = z
  .object({
    name: z.string(),
    addresses: z.array(z.string()).openapi({
      description:
        "IPv4 addresses on the project's networks: the instance's, or the group's ready instances' (empty: the name exists but has none now).",
    }),
  })
  .openapi("InternalNameAnswer");
export type InternalNameAnswer = z.infer<typeof InternalNameAnswerSchema>;
