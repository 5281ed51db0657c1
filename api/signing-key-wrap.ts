// The signing keys' private halves are stored in the catalog only wrapped (AES-256-GCM) with
// a key-encryption key that is not in the catalog: derived from GLOBALVM_SIGNING_KEY_SECRET
// (what control planes sharing one Postgres share), else from a secret file the control plane
// creates 0600 in its data dir on the first start. A reader of the catalog (its files, a
// backup, a database login) gets public keys and ciphertext, nothing to sign with.
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { JWK } from "jose";
import { ConfigurationError } from "../common/configuration-error.ts";
import { assertStrongSecret } from "../common/secret-strength.ts";

export const SIGNING_KEY_SECRET_VARIABLE = "GLOBALVM_SIGNING_KEY_SECRET";
export const SIGNING_KEY_SECRET_FILE = "signing-key-secret";

export interface KeyEncryptionKey {
  key: Buffer;
  /** Where it came from, for the error when it does not open a stored key. */
  source: string;
}

const WRAP_FORMAT = "v1";

function deriveKey(secret: string, source: string): KeyEncryptionKey {
  const key = Buffer.from(hkdfSync("sha256", secret, "globalvm signing-key wrap", WRAP_FORMAT, 32));
  return { key, source };
}

/**
 * The key-encryption key: from `secret` (GLOBALVM_SIGNING_KEY_SECRET, checked for strength),
 * else from the secret file in `dataDir` (created 0600 on the first start), else — for an
 * in-memory catalog only — a random one that lives as long as the process.
 */
export function resolveKeyEncryptionKey(options: { secret?: string; dataDir?: string }): KeyEncryptionKey {
  if (options.secret !== undefined) {
    assertStrongSecret(SIGNING_KEY_SECRET_VARIABLE, options.secret);
    return deriveKey(options.secret, SIGNING_KEY_SECRET_VARIABLE);
  }
  if (options.dataDir === undefined)
    return deriveKey(randomBytes(32).toString("base64"), "a key held in memory");
  const path = join(options.dataDir, SIGNING_KEY_SECRET_FILE);
  const source = `${path} (or ${SIGNING_KEY_SECRET_VARIABLE})`;
  try {
    return deriveKey(readFileSync(path, "utf8").trim(), source);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const secret = randomBytes(32).toString("base64");
  // "wx": two processes starting at once must not overwrite each other's secret.
  writeFileSync(path, `${secret}\n`, { mode: 0o600, flag: "wx" });
  return deriveKey(secret, source);
}

/** `v1.<iv>.<ciphertext>.<tag>` (base64url); the kid is authenticated so a wrapped key cannot move to another row. */
export function wrapPrivateJwk(kek: KeyEncryptionKey, kid: string, jwk: JWK): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", kek.key, iv);
  cipher.setAAD(Buffer.from(kid));
  const ciphertext = Buffer.concat([cipher.update(JSON.stringify(jwk), "utf8"), cipher.final()]);
  return [WRAP_FORMAT, iv, ciphertext, cipher.getAuthTag()]
    .map((part) => (typeof part === "string" ? part : part.toString("base64url")))
    .join(".");
}

export function unwrapPrivateJwk(kek: KeyEncryptionKey, kid: string, wrapped: string): JWK {
  const [format, iv, ciphertext, tag] = wrapped.split(".");
  if (format !== WRAP_FORMAT || !iv || !ciphertext || !tag) {
    throw new Error(`signing key ${kid} is not stored in a format this control plane reads`);
  }
  try {
    const decipher = createDecipheriv("aes-256-gcm", kek.key, Buffer.from(iv, "base64url"));
    decipher.setAAD(Buffer.from(kid));
    decipher.setAuthTag(Buffer.from(tag, "base64url"));
    const clear = Buffer.concat([decipher.update(Buffer.from(ciphertext, "base64url")), decipher.final()]);
    return JSON.parse(clear.toString("utf8")) as JWK;
  } catch {
    throw new ConfigurationError(
      `signing key ${kid} in the catalog was wrapped with another secret than ${kek.source}: set ${SIGNING_KEY_SECRET_VARIABLE} to the secret the other control planes on this database use`,
    );
  }
}
