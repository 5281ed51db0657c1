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
