// The syntax of metadata_from references between VM groups, shared by the control plane
// (validation at create, resolution) and the Terraform provider (plan-time checks).

/** Values of another group's instance that a metadata value may take (besides its guest attributes). */
export const REFERENCEABLE_ATTRIBUTES = ["address", "id", "name", "datacenter"] as const;

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
