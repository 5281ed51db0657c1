import { eq } from "drizzle-orm";
import { assertStrongSecret } from "../common/secret-strength.ts";
import { hashSecret, newTokenSecret } from "./auth.ts";
import type { CatalogDb } from "./catalog/db.ts";
import { apiTokens } from "./catalog/schema.ts";
import { newId } from "./ids.ts";

export type AdminTokenOutcome =
  | { kind: "from-environment" }
  | { kind: "generated"; secret: string }
  | { kind: "kept" };

/**
 * The bootstrap admin token: GLOBALVM_ADMIN_TOKEN when given (replacing an earlier one),
 * else a random one generated on the first start only and shown once.
 */
export async function ensureBootstrapAdminToken(
  db: CatalogDb,
  fromEnvironment?: string,
): Promise<AdminTokenOutcome> {
  const [existing] = await db.select().from(apiTokens).where(eq(apiTokens.bootstrap, true)).limit(1);
  if (fromEnvironment) {
    assertStrongSecret("GLOBALVM_ADMIN_TOKEN", fromEnvironment);
    const secretHash = hashSecret(fromEnvironment);
    if (existing) {
      if (existing.secretHash !== secretHash) {
        await db.update(apiTokens).set({ secretHash }).where(eq(apiTokens.id, existing.id));
      }
    } else {
      await db.insert(apiTokens).values(bootstrapRow(secretHash));
    }
    return { kind: "from-environment" };
  }
  if (existing) return { kind: "kept" };
  const secret = newTokenSecret();
  await db.insert(apiTokens).values(bootstrapRow(hashSecret(secret)));
  return { kind: "generated", secret };
}

function bootstrapRow(secretHash: string) {
  return {
    id: newId("token"),
    name: "bootstrap admin",
    projectId: null,
    secretHash,
    scopes: ["admin"],
    bootstrap: true,
  };
}
