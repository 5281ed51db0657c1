import { createHash } from "node:crypto";
import { and, eq } from "drizzle-orm";
import type { Context } from "hono";
import { idempotencyKeys } from "./catalog/schema.ts";
import type { AppEnv } from "./env.ts";
import { ApiError, errors } from "./errors.ts";

const KEY_PATTERN = /^[A-Za-z0-9_.:-]{1,255}$/;

export interface StoredResponse {
  status: 200 | 201 | 202;
  body: unknown;
}

/**
 * For answers that carry a short-lived secret (an upload ticket's bearer token): the catalog
 * keeps the answer without it, and a replay gets it back only while it still serves its purpose.
 */
export interface ReplaySecrets<B> {
  /** The answer as stored: without the secret. */
  strip(body: B): unknown;
  /** The answer to a replay, from the stored one: a fresh secret, or none when it no longer applies. */
  revive(stored: unknown): Promise<B>;
}

/**
 * Runs `create` once per (caller, Idempotency-Key): a retry with the same body gets the first
 * response back, a different body with the same key is a 409. Without the header it just runs.
 */
export async function withIdempotency<R extends StoredResponse>(
  c: Context<AppEnv>,
  body: unknown,
  create: () => Promise<R>,
  secrets?: ReplaySecrets<R["body"]>,
): Promise<R> {
  const key = c.req.header("idempotency-key");
  if (key === undefined) return create();
  if (!KEY_PATTERN.test(key)) {
    throw errors.validation([
      { path: "Idempotency-Key", message: "1–255 characters of letters, digits, _ . : -" },
    ]);
  }
  const principal = c.get("principal");
  const owner = principal.projectId ?? principal.tokenId;
  const requestHash = createHash("sha256")
    .update(`${c.req.method} ${c.req.path}\n${JSON.stringify(body)}`)
    .digest("hex");
  const { db } = c.get("services");
  const lookup = () =>
    db
      .select()
      .from(idempotencyKeys)
      .where(and(eq(idempotencyKeys.principal, owner), eq(idempotencyKeys.key, key)))
      .limit(1);

  const replay = async (row: typeof idempotencyKeys.$inferSelect): Promise<R> => {
    if (row.requestHash !== requestHash) {
      throw errors.conflict(
        "idempotency_key_reused",
        `Idempotency-Key ${key} was first used with a different request; use a new key for a new request.`,
      );
    }
    return { status: row.status, body: secrets ? await secrets.revive(row.body) : row.body } as R;
  };

  const [previous] = await lookup();
  if (previous) return replay(previous);
  const response = await create();
  const inserted = await db
    .insert(idempotencyKeys)
    .values({
      principal: owner,
      key,
      requestHash,
      status: response.status,
      body: secrets ? secrets.strip(response.body) : response.body,
    })
    .onConflictDoNothing()
    .returning({ key: idempotencyKeys.key });
  if (inserted.length === 0) {
    // A concurrent request with the same key won the race; answer as it did.
    const [winner] = await lookup();
    if (!winner) throw new ApiError(500, "internal", "idempotency record vanished");
    return replay(winner);
  }
  return response;
}
