import { parseReferencedAttribute } from "../../schemas/vm-group-references.ts";

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
