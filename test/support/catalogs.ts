// Real databases for tests: a fresh database in the run's throwaway Postgres cluster, or an
// in-memory PGlite. Suites run against both with describe.each(CATALOG_KINDS).
import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { inject } from "vitest";
import { type Catalog, openCatalog } from "../../api/catalog/db.ts";

export const CATALOG_KINDS = ["pglite", "postgres"] as const;
export type CatalogKind = (typeof CATALOG_KINDS)[number];

export async function createTestDatabaseUrl(): Promise<string> {
  const adminUrl = inject("postgresAdminUrl");
  const name = `t_${randomBytes(6).toString("hex")}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

export async function openTestCatalog(kind: CatalogKind): Promise<Catalog> {
  const catalog =
    kind === "postgres"
      ? openCatalog({ databaseUrl: await createTestDatabaseUrl() })
      : openCatalog({ inMemory: true });
  await catalog.migrate();
  return catalog;
}
