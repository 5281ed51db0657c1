import { and, asc, eq, inArray } from "drizzle-orm";
import type { ExposedPort, ReportedEndpoint } from "../../schemas/endpoints.ts";
import {
  findReferenceCycle,
  parseReferencedAttribute,
  REFERENCEABLE_ATTRIBUTES_TEXT,
} from "../../schemas/vm-group-references.ts";
import type { MetadataReference } from "../../schemas/vm-groups.ts";
import { errors, type FieldError } from "../errors.ts";
import type { CatalogDb } from "./db.ts";
import { instances, type StoredEndpoint, vmGroups } from "./schema.ts";

export async function findVmGroup(db: CatalogDb, projectId: string, id: string) {
  const [row] = await db
    .select()
    .from(vmGroups)
    .where(and(eq(vmGroups.id, id), eq(vmGroups.projectId, projectId)))
    .limit(1);
  return row;
}

/**
 * Checks metadata_from: no key also given as a plain value, every attribute is one we know,
 * every referenced group exists in the project, and (for an existing group) the new
 * references close no cycle.
 */
export async function assertValidReferences(
  db: CatalogDb,
  projectId: string,
  metadata: Record<string, string>,
  references: Record<string, MetadataReference>,
  selfId?: string,
): Promise<void> {
  const clashes: FieldError[] = Object.keys(references)
    .filter((key) => key in metadata)
    .map((key) => ({
      path: `metadata_from.${key}`,
      message: "this key is also set in metadata; give it in one place",
    }));
  if (clashes.length > 0) throw errors.validation(clashes);

  const entries = Object.entries(references);
  if (entries.length === 0) return;
  const unknownAttributes: FieldError[] = entries
    .filter(([, ref]) => parseReferencedAttribute(ref.attribute) === null)
    .map(([key, ref]) => ({
      path: `metadata_from.${key}.attribute`,
      message: `unknown attribute ${JSON.stringify(ref.attribute)}; use ${REFERENCEABLE_ATTRIBUTES_TEXT}`,
    }));
  if (unknownAttributes.length > 0) {
    throw errors.unprocessable(
      "unknown_attribute",
      unknownAttributes.map((m) => `${m.path}: ${m.message}`).join("; "),
      unknownAttributes,
    );
  }
  const targets = [...new Set(entries.map(([, ref]) => ref.vm_group))];
  const found = await db
    .select({ id: vmGroups.id })
    .from(vmGroups)
    .where(and(eq(vmGroups.projectId, projectId), inArray(vmGroups.id, targets)));
  const known = new Set(found.map((g) => g.id));
  if (selfId) known.add(selfId);
  const missing: FieldError[] = entries
    .filter(([, ref]) => !known.has(ref.vm_group))
    .map(([key, ref]) => ({
      path: `metadata_from.${key}.vm_group`,
      message: `no VM group ${ref.vm_group} in this project`,
    }));
  if (missing.length > 0) {
    throw errors.unprocessable(
      "reference_not_found",
      missing.map((m) => `${m.path}: ${m.message}`).join("; "),
      missing,
    );
  }
  if (!selfId) return;

  const all = await db
    .select({ id: vmGroups.id, metadataFrom: vmGroups.metadataFrom })
    .from(vmGroups)
    .where(eq(vmGroups.projectId, projectId));
  const graph = new Map(all.map((g) => [g.id, Object.values(g.metadataFrom).map((r) => r.vm_group)]));
  graph.set(selfId, targets);
  const cycle = findReferenceCycle(graph, selfId);
  if (cycle) {
    throw errors.unprocessable(
      "reference_cycle",
      `metadata_from would close a reference cycle: ${cycle.join(" → ")}`,
      [{ path: "metadata_from", message: "reference cycle" }],
    );
  }
}

const portKey = (entry: { protocol: string; port: number }) => `${entry.protocol}/${entry.port}`;

/** Two `expose` lists name the same ports, in whatever order. */
function sameExposedPorts(a: readonly ExposedPort[], b: readonly ExposedPort[]): boolean {
  const keys = new Set(a.map(portKey));
  return a.length === b.length && b.every((entry) => keys.has(portKey(entry)));
}

/** An update may repeat the group's `expose` (a client sending its whole configuration) but not change it. */
export function assertExposeUnchanged(current: readonly ExposedPort[], requested: readonly ExposedPort[]) {
  if (sameExposedPorts(current, requested)) return;
  const text = (ports: readonly ExposedPort[]) => ports.map(portKey).join(", ") || "none";
  throw errors.unprocessable(
    "expose_immutable",
    `expose cannot change in place (the group exposes ${text(current)}, the update asks for ${text(requested)}); create another group.`,
    [{ path: "expose", message: "cannot change after the group is created" }],
  );
}

/** The datacenter an endpoint was reported from (a row from before regional groups: the group's). */
function reportedFrom(endpoint: StoredEndpoint, groupDatacenter: string | null): string | null {
  return endpoint.datacenter ?? groupDatacenter;
}

/**
 * A datacenter's endpoints for the group replace what it reported before; other datacenters'
 * stay. Kept sorted, so that the same endpoints in another order are no change.
 */
export function mergeEndpoints(
  stored: readonly StoredEndpoint[],
  groupDatacenter: string | null,
  datacenter: string,
  reported: readonly ReportedEndpoint[],
): StoredEndpoint[] {
  return [
    ...stored
      .filter((endpoint) => reportedFrom(endpoint, groupDatacenter) !== datacenter)
      .map((endpoint) => ({ ...endpoint, datacenter: reportedFrom(endpoint, groupDatacenter) ?? "" }))
      .filter((endpoint) => endpoint.datacenter !== ""),
    ...reported.map((endpoint) => ({ ...endpoint, datacenter })),
  ].sort(
    (a, b) =>
      a.datacenter.localeCompare(b.datacenter) || a.protocol.localeCompare(b.protocol) || a.port - b.port,
  );
}

/** The group's endpoints (and datacenter), its row locked until the transaction ends. */
async function lockedEndpoints(tx: CatalogDb, groupId: string) {
  const [group] = await tx
    .select({ endpoints: vmGroups.endpoints, datacenter: vmGroups.datacenter })
    .from(vmGroups)
    .where(eq(vmGroups.id, groupId))
    .for("update");
  return group;
}

/** Compared by value: jsonb hands objects back with their keys in its own order. */
function sameEndpoints(a: readonly StoredEndpoint[], b: readonly StoredEndpoint[]): boolean {
  const key = (e: StoredEndpoint) => `${e.datacenter ?? ""}|${e.protocol}|${e.port}|${e.address}`;
  return a.length === b.length && a.every((e, i) => key(e) === key(b[i] as StoredEndpoint));
}

/**
 * Records the endpoints a datacenter's manager reported for the group. The row is written only
 * when they differ (every instance of the group reports them), under its lock, so that two
 * datacenters reporting at once both keep theirs.
 */
export async function recordEndpoints(
  db: CatalogDb,
  groupId: string,
  datacenter: string,
  reported: readonly ReportedEndpoint[],
) {
  await db.transaction(async (tx) => {
    const group = await lockedEndpoints(tx, groupId);
    if (!group) return;
    const endpoints = mergeEndpoints(group.endpoints, group.datacenter, datacenter, reported);
    if (sameEndpoints(endpoints, group.endpoints)) return;
    await tx.update(vmGroups).set({ endpoints }).where(eq(vmGroups.id, groupId));
  });
}

/**
 * A datacenter with no instance of the group left has no endpoint for it: what its manager
 * reported went with them.
 */
export async function forgetEndpointsIfEmpty(db: CatalogDb, groupId: string, datacenter: string) {
  await db.transaction(async (tx) => {
    const group = await lockedEndpoints(tx, groupId);
    if (!group || group.endpoints.length === 0) return;
    const [left] = await tx
      .select({ id: instances.id })
      .from(instances)
      .where(and(eq(instances.vmGroupId, groupId), eq(instances.datacenter, datacenter)))
      .limit(1);
    if (left) return;
    const endpoints = mergeEndpoints(group.endpoints, group.datacenter, datacenter, []);
    if (endpoints.length === group.endpoints.length) return;
    await tx.update(vmGroups).set({ endpoints }).where(eq(vmGroups.id, groupId));
  });
}

/** A group's instances by ordinal, a retiring one after its replacement. */
export async function groupInstances(db: CatalogDb, groupId: string) {
  return db
    .select()
    .from(instances)
    .where(eq(instances.vmGroupId, groupId))
    .orderBy(asc(instances.ordinal), asc(instances.retiring));
}
