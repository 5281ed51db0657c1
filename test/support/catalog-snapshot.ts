// Every row of every catalog table: comparing two snapshots tells whether a request wrote
// anything at all, wherever it would have written (a refused request must write nothing).
import { getTableName, is } from "drizzle-orm";
import { PgTable } from "drizzle-orm/pg-core";
import type { CatalogDb } from "../../api/catalog/db.ts";
import * as schema from "../../api/catalog/schema.ts";

const TABLES = (Object.values(schema) as unknown[]).filter((value): value is PgTable => is(value, PgTable));
// An empty list would make every snapshot equal, and every "nothing changed" check pass.
if (TABLES.length === 0) throw new Error("no tables found in api/catalog/schema.ts");

export type CatalogSnapshot = Record<string, string[]>;

export async function catalogSnapshot(db: CatalogDb): Promise<CatalogSnapshot> {
  const snapshot: CatalogSnapshot = {};
  for (const table of TABLES) {
    const rows: unknown[] = await db.select().from(table as never);
    // Sorted: a table's row order is not part of its content.
    snapshot[getTableName(table)] = rows.map((row) => JSON.stringify(row)).sort();
  }
  return snapshot;
}

/** The tables whose rows differ between two snapshots (empty: nothing changed). */
export function changedTables(before: CatalogSnapshot, after: CatalogSnapshot): string[] {
  const names = new Set([...Object.keys(before), ...Object.keys(after)]);
  return [...names].filter((name) => JSON.stringify(before[name]) !== JSON.stringify(after[name])).sort();
}
