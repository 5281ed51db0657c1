// Upgrading a catalog whose signing keys were stored in clear: the migration drops them (they
// sat where other local users could read them) and the first start makes a wrapped key.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import { drizzle } from "drizzle-orm/pglite";
import { expect, it } from "vitest";
import type { CatalogDb } from "../../api/catalog/db.ts";
import * as schema from "../../api/catalog/schema.ts";
import { SigningKeyring } from "../../api/signing.ts";
import { resolveKeyEncryptionKey } from "../../api/signing-key-wrap.ts";
import { strongSecret } from "../support/secrets.ts";

const MIGRATIONS = fileURLToPath(new URL("../../migrations", import.meta.url));
const WRAPPING_MIGRATION = "0007_signing_keys_wrapped.sql";

async function runMigration(client: PGlite, file: string) {
  for (const statement of readFileSync(join(MIGRATIONS, file), "utf8").split("--> statement-breakpoint")) {
    await client.exec(statement);
  }
}

it("drops keys stored in clear, and the next start signs with a wrapped key", async () => {
  const client = new PGlite();
  try {
    const earlier = readdirSync(MIGRATIONS)
      .filter((file) => file.endsWith(".sql"))
      .sort()
      .filter((file) => file < WRAPPING_MIGRATION);
    for (const file of earlier) await runMigration(client, file);
    await client.query(
      `insert into signing_keys (kid, algorithm, public_jwk, private_jwk) values ('key_old', 'ES256', '{"kid":"key_old"}', '{"d":"clear-private-part"}')`,
    );

    await runMigration(client, WRAPPING_MIGRATION);
    expect((await client.query("select * from signing_keys")).rows).toEqual([]);
    const columns = await client.query<{ column_name: string }>(
      "select column_name from information_schema.columns where table_name = 'signing_keys'",
    );
    expect(columns.rows.map((c) => c.column_name)).not.toContain("private_jwk");

    const db = drizzle(client, { schema }) as unknown as CatalogDb;
    const keyring = await SigningKeyring.open(db, resolveKeyEncryptionKey({ secret: strongSecret() }));
    const [row] = (
      await client.query<{ kid: string; wrapped_private_jwk: string }>("select * from signing_keys")
    ).rows;
    expect(row?.kid).toBe((await keyring.current()).kid);
    expect(row?.wrapped_private_jwk).toMatch(/^v1\./);
  } finally {
    await client.close();
  }
});
