// The control plane's signing keys for transfer tokens. Keys live in the catalog so that
// every control-plane process on one database signs with keys all managers accept.
import { asc } from "drizzle-orm";
import { exportJWK, generateKeyPair, importJWK, type JSONWebKeySet, type JWK } from "jose";
import { type InstanceClaims, signInstanceToken } from "../regional-manager/auth/instance-token.ts";
import { signTransferToken, type TransferClaims } from "../regional-manager/auth/transfer-token.ts";
import type { CatalogDb } from "./catalog/db.ts";
import { signingKeys } from "./catalog/schema.ts";
import { newId } from "./ids.ts";

export const TRANSFER_TOKEN_ISSUER = "globalvm-control-plane";
export const TRANSFER_TOKEN_LIFETIME_SECONDS = 15 * 60;

export interface TransferTokenSigner {
  sign(claims: TransferClaims): Promise<{ token: string; expiresAt: Date }>;
  jwks(): JSONWebKeySet;
}

async function loadSigningKey(db: CatalogDb) {
  let rows = await db.select().from(signingKeys).orderBy(asc(signingKeys.createdAt));
  if (rows.length === 0) {
    const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
    const kid = newId("token").replace(/^tok_/, "key_");
    await db.insert(signingKeys).values({
      kid,
      algorithm: "ES256",
      publicJwk: { ...(await exportJWK(publicKey)), kid, alg: "ES256", use: "sig" },
      privateJwk: { ...(await exportJWK(privateKey)), kid, alg: "ES256" },
    });
    rows = await db.select().from(signingKeys).orderBy(asc(signingKeys.createdAt));
  }
  // Two processes starting at once may both insert a key; the oldest one signs, all verify.
  const signing = rows[0];
  if (!signing) throw new Error("no signing key");
  const privateKey = await importJWK(signing.privateJwk as JWK, signing.algorithm);
  if (privateKey instanceof Uint8Array) throw new Error("signing keys must be asymmetric");
  const keys = rows.map((row) => row.publicJwk as JWK);
  return { privateKey, kid: signing.kid, keys };
}

export async function loadTransferTokenSigner(db: CatalogDb): Promise<TransferTokenSigner> {
  const { privateKey, kid, keys } = await loadSigningKey(db);
  return {
    async sign(claims) {
      const token = await signTransferToken(privateKey, claims, {
        keyId: kid,
        issuer: TRANSFER_TOKEN_ISSUER,
        lifetimeSeconds: TRANSFER_TOKEN_LIFETIME_SECONDS,
      });
      return { token, expiresAt: new Date(Date.now() + TRANSFER_TOKEN_LIFETIME_SECONDS * 1000) };
    },
    jwks: () => ({ keys }),
  };
}

export const INSTANCE_TOKEN_LIFETIME_SECONDS = 5 * 60;

/** Signs instance tokens (one datacenter, one instance) with the same keys as transfer tokens. */
export interface InstanceTokenSigner {
  sign(claims: InstanceClaims): Promise<string>;
}

export async function loadInstanceTokenSigner(db: CatalogDb): Promise<InstanceTokenSigner> {
  const { privateKey, kid } = await loadSigningKey(db);
  return {
    sign: (claims) =>
      signInstanceToken(privateKey, claims, {
        keyId: kid,
        issuer: TRANSFER_TOKEN_ISSUER,
        lifetimeSeconds: INSTANCE_TOKEN_LIFETIME_SECONDS,
      }),
  };
}
