import { and, eq, inArray } from "drizzle-orm";
import {
  findReferenceCycle,
  parseReferencedAttribute,
  REFERENCEABLE_ATTRIBUTES_TEXT,
} from "../../schemas/vm-group-references.ts";
import type { MetadataReference } from "../../schemas/vm-groups.ts";
import { errors, type FieldError } from "../errors.ts";
import type { CatalogDb } from "./db.ts";
import { vmGroups } from "./schema.ts";

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
