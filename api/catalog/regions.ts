import { inArray } from "drizzle-orm";
import { errors, type FieldError } from "../errors.ts";
import type { CatalogDb } from "./db.ts";
import { regions } from "./schema.ts";

/** 422 naming each field that refers to a region the catalog does not know. */
export async function assertRegionsExist(
  db: CatalogDb,
  refs: { path: string; name: string }[],
): Promise<void> {
  if (refs.length === 0) return;
  const known = await db
    .select({ name: regions.name })
    .from(regions)
    .where(inArray(regions.name, [...new Set(refs.map((r) => r.name))]));
  const knownNames = new Set(known.map((r) => r.name));
  const missing: FieldError[] = refs
    .filter((r) => !knownNames.has(r.name))
    .map((r) => ({ path: r.path, message: `unknown region ${r.name}` }));
  if (missing.length > 0) {
    throw errors.unprocessable(
      "region_not_found",
      missing.map((m) => `${m.path}: ${m.message}`).join("; "),
      missing,
    );
  }
}
