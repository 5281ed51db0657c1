import { REFERENCEABLE_ATTRIBUTES } from "../../schemas/vm-groups.ts";

/**
 * Groups whose metadata takes values from other groups form a graph; a cycle would leave
 * every group in it waiting for the others forever. Returns the cycle through `start`
 * (as group IDs, first = last) or null.
 */
export function findReferenceCycle(
  dependsOn: ReadonlyMap<string, readonly string[]>,
  start: string,
): string[] | null {
  const path: string[] = [];
  const done = new Set<string>();
  const visit = (node: string): string[] | null => {
    const at = path.indexOf(node);
    if (at !== -1) return [...path.slice(at), node];
    if (done.has(node)) return null;
    path.push(node);
    for (const next of dependsOn.get(node) ?? []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    path.pop();
    done.add(node);
    return null;
  };
  return visit(start);
}

const GUEST_ATTRIBUTE = /^guest-attributes\/([A-Za-z0-9_-]{1,128})\/([A-Za-z0-9_-]{1,128})$/;

export type ReferencedAttribute =
  | { kind: "instance"; name: (typeof REFERENCEABLE_ATTRIBUTES)[number] }
  /** A value the referenced guest publishes itself (PUT instance/guest-attributes/<namespace>/<key>). */
  | { kind: "guest-attribute"; path: string };

/** What a metadata_from attribute names, or null when it names nothing we know. */
export function parseReferencedAttribute(attribute: string): ReferencedAttribute | null {
  const known = REFERENCEABLE_ATTRIBUTES.find((name) => name === attribute);
  if (known) return { kind: "instance", name: known };
  const guest = GUEST_ATTRIBUTE.exec(attribute);
  return guest ? { kind: "guest-attribute", path: `${guest[1]}/${guest[2]}` } : null;
}

export const REFERENCEABLE_ATTRIBUTES_TEXT = `${REFERENCEABLE_ATTRIBUTES.join(", ")} or guest-attributes/<namespace>/<key>`;

/** The instance facts a reference may read. */
export interface ReferencedInstance {
  id: string;
  ordinal: number;
  address: string | null;
  datacenter: string;
  guestAttributes: Record<string, string>;
  retiring: boolean;
}

/**
 * The values of metadata_from that exist now; the others are left out, and reach the guests
 * when they appear. While an ordinal is being replaced, its newer instance is the one named.
 */
export function resolveReferences(
  references: Record<string, { vm_group: string; instance: number; attribute: string }>,
  instancesByGroup: ReadonlyMap<string, { groupName: string; rows: readonly ReferencedInstance[] }>,
): Record<string, string> {
  const values: Record<string, string> = {};
  for (const [key, ref] of Object.entries(references)) {
    const group = instancesByGroup.get(ref.vm_group);
    const candidates = group?.rows.filter((r) => r.ordinal === ref.instance) ?? [];
    const row = candidates.find((r) => !r.retiring) ?? candidates[0];
    const attribute = parseReferencedAttribute(ref.attribute);
    if (!group || !row || !attribute) continue;
    const value =
      attribute.kind === "guest-attribute"
        ? row.guestAttributes[attribute.path]
        : attribute.name === "address"
          ? row.address
          : attribute.name === "id"
            ? row.id
            : attribute.name === "name"
              ? `${group.groupName}-${row.ordinal}`
              : row.datacenter;
    if (value !== null && value !== undefined) values[key] = value;
  }
  return values;
}

/** Whether an instance report changes a value that other groups' metadata may take from it. */
export function changesReferenceableValues(
  before: { address: string | null; guestAttributes: Record<string, string> },
  report: { address?: string | null; guest_attributes?: Record<string, string> },
): boolean {
  if (report.address !== undefined && report.address !== before.address) return true;
  if (report.guest_attributes === undefined) return false;
  const after = report.guest_attributes;
  const keys = new Set([...Object.keys(before.guestAttributes), ...Object.keys(after)]);
  return [...keys].some((key) => before.guestAttributes[key] !== after[key]);
}
