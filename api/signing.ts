// The control plane's signing keys for transfer and instance tokens. Keys live in the catalog
// so that every control-plane process on one database signs with keys all managers accept;
// their private halves only wrapped (signing-key-wrap.ts). Keys rotate: the newest key whose
// signs_from has come signs, the ones before it stay in the JWKS until every token they could
// have signed has expired, then they are deleted.
import { asc, inArray } from "drizzle-orm";
import { type CryptoKey, exportJWK, generateKeyPair, importJWK, type JSONWebKeySet, type JWK } from "jose";
import { CONTROL_PLANE_TOKEN_ISSUER } from "../common/tokens/control-plane-jwt.ts";
import { type InstanceClaims, signInstanceToken } from "../common/tokens/instance-token.ts";
import { type NetworkClaims, signNetworkToken } from "../common/tokens/network-token.ts";
import { signTransferToken, type TransferClaims } from "../common/tokens/transfer-token.ts";
import type { CatalogDb } from "./catalog/db.ts";
import { signingKeys } from "./catalog/schema.ts";
import { newId } from "./ids.ts";
import { type KeyEncryptionKey, unwrapPrivateJwk, wrapPrivateJwk } from "./signing-key-wrap.ts";

export const TRANSFER_TOKEN_LIFETIME_SECONDS = 15 * 60;
export const INSTANCE_TOKEN_LIFETIME_SECONDS = 5 * 60;
/** Managers' clocks may run behind ours by this much; a retired key verifies this much longer. */
const CLOCK_SKEW_SECONDS = 60;
/** How long a key stays in the JWKS after a newer key took over signing. */
export const RETIRED_KEY_VERIFY_SECONDS =
  Math.max(TRANSFER_TOKEN_LIFETIME_SECONDS, INSTANCE_TOKEN_LIFETIME_SECONDS) + CLOCK_SKEW_SECONDS;
/**
 * How long a process signs with the keys it read before reading them again: a key another
 * control plane on the same database rotated in is signing here within this time.
 */
const KEY_REFRESH_MS = 5_000;

type SigningKeyRow = typeof signingKeys.$inferSelect;

export interface KeyTimeline {
  /** The key that signs now (undefined when there is none yet). */
  signing: SigningKeyRow | undefined;
  /** Keys managers must know: the signing one, upcoming ones, and retired ones whose tokens may still be live. */
  published: { row: SigningKeyRow; verifiesUntil: Date | null }[];
  /** Retired keys whose every token has expired. */
  expired: SigningKeyRow[];
}

/** Which key signs at `now`, which ones are published, which can go. */
export function keyTimeline(rows: readonly SigningKeyRow[], now: Date): KeyTimeline {
  const ordered = [...rows].sort(
    (a, b) => a.signsFrom.getTime() - b.signsFrom.getTime() || a.kid.localeCompare(b.kid),
  );
  const started = ordered.filter((row) => row.signsFrom <= now);
  const signing = started.at(-1);
  const published: KeyTimeline["published"] = [];
  const expired: SigningKeyRow[] = [];
  ordered.forEach((row, index) => {
    const next = ordered[index + 1];
    const retiredAt = next && next.signsFrom <= now ? next.signsFrom : undefined;
    if (!retiredAt) {
      published.push({ row, verifiesUntil: null });
      return;
    }
    const verifiesUntil = new Date(retiredAt.getTime() + RETIRED_KEY_VERIFY_SECONDS * 1000);
    if (verifiesUntil > now) published.push({ row, verifiesUntil });
    else expired.push(row);
  });
  return { signing, published, expired };
}

export interface SigningKey {
  kid: string;
  algorithm: string;
  publicJwk: JWK;
  signsFrom: Date;
}

/** The signing keys of one catalog, shared by the transfer and instance token signers. */
export class SigningKeyring {
  readonly #db: CatalogDb;
  readonly #kek: KeyEncryptionKey;
  readonly #now: () => Date;
  #rows: SigningKeyRow[] = [];
  #readAt = 0;
  readonly #privateKeys = new Map<string, CryptoKey>();

  private constructor(db: CatalogDb, kek: KeyEncryptionKey, now: () => Date) {
    this.#db = db;
    this.#kek = kek;
    this.#now = now;
  }

  /**
   * Opens the keyring, making the first key when the catalog has none, and checks that this
   * process can unwrap the signing key (a wrong secret fails the start, not the first token).
   */
  static async open(db: CatalogDb, kek: KeyEncryptionKey, now: () => Date = () => new Date()) {
    const keyring = new SigningKeyring(db, kek, now);
    if ((await keyring.#read()).signing === undefined) await keyring.rotate();
    await keyring.current();
    return keyring;
  }

  async #read(): Promise<KeyTimeline> {
    this.#rows = await this.#db.select().from(signingKeys).orderBy(asc(signingKeys.signsFrom));
    this.#readAt = Date.now();
    return keyTimeline(this.#rows, this.#now());
  }

  /** The key to sign with now, with its private half unwrapped. */
  async current(): Promise<{ kid: string; privateKey: CryptoKey }> {
    const timeline =
      Date.now() - this.#readAt > KEY_REFRESH_MS ? await this.#read() : keyTimeline(this.#rows, this.#now());
    const signing = timeline.signing ?? (await this.#read()).signing;
    if (!signing) throw new Error("the catalog holds no signing key");
    let privateKey = this.#privateKeys.get(signing.kid);
    if (!privateKey) {
      const imported = await importJWK(
        unwrapPrivateJwk(this.#kek, signing.kid, signing.wrappedPrivateJwk),
        signing.algorithm,
      );
      if (imported instanceof Uint8Array) throw new Error("signing keys must be asymmetric");
      privateKey = imported;
      this.#privateKeys.set(signing.kid, privateKey);
    }
    return { kid: signing.kid, privateKey };
  }

  /** The published public keys, read from the catalog each time: a key rotated in by another process is there at once. */
  async jwks(): Promise<JSONWebKeySet> {
    const { published } = await this.#read();
    return { keys: published.map(({ row }) => row.publicJwk as JWK) };
  }

  /**
   * Adds a new key that signs from `signsFrom` (default now: at once); the key signing until
   * then keeps verifying for RETIRED_KEY_VERIFY_SECONDS after. Keys whose tokens have all
   * expired are deleted.
   */
  async rotate(
    signsFrom: Date = this.#now(),
  ): Promise<{ key: SigningKey; previous?: { kid: string; verifiesUntil: Date } }> {
    const previous = (await this.#read()).signing;
    const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
    const kid = newId("token").replace(/^tok_/, "key_");
    const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: "ES256", use: "sig" };
    const privateJwk = { ...(await exportJWK(privateKey)), kid, alg: "ES256" };
    await this.#db.insert(signingKeys).values({
      kid,
      algorithm: "ES256",
      publicJwk,
      wrappedPrivateJwk: wrapPrivateJwk(this.#kek, kid, privateJwk),
      signsFrom,
    });
    const { expired } = await this.#read();
    if (expired.length > 0) {
      await this.#db.delete(signingKeys).where(
        inArray(
          signingKeys.kid,
          expired.map((row) => row.kid),
        ),
      );
      for (const row of expired) this.#privateKeys.delete(row.kid);
    }
    return {
      key: { kid, algorithm: "ES256", publicJwk, signsFrom },
      ...(previous
        ? {
            previous: {
              kid: previous.kid,
              verifiesUntil: new Date(signsFrom.getTime() + RETIRED_KEY_VERIFY_SECONDS * 1000),
            },
          }
        : {}),
    };
  }
}

export interface TransferTokenSigner {
  sign(claims: TransferClaims): Promise<{ token: string; expiresAt: Date }>;
}

export function transferTokenSigner(keyring: SigningKeyring): TransferTokenSigner {
  return {
    async sign(claims) {
      const { kid, privateKey } = await keyring.current();
      const token = await signTransferToken(privateKey, claims, {
        keyId: kid,
        issuer: CONTROL_PLANE_TOKEN_ISSUER,
        lifetimeSeconds: TRANSFER_TOKEN_LIFETIME_SECONDS,
      });
      return { token, expiresAt: new Date(Date.now() + TRANSFER_TOKEN_LIFETIME_SECONDS * 1000) };
    },
  };
}

/** Signs instance tokens (one datacenter, one instance) with the same keys as transfer tokens. */
export interface InstanceTokenSigner {
  sign(claims: InstanceClaims): Promise<string>;
}

export function instanceTokenSigner(keyring: SigningKeyring): InstanceTokenSigner {
  return {
    async sign(claims) {
      const { kid, privateKey } = await keyring.current();
      return signInstanceToken(privateKey, claims, {
        keyId: kid,
        issuer: CONTROL_PLANE_TOKEN_ISSUER,
        lifetimeSeconds: INSTANCE_TOKEN_LIFETIME_SECONDS,
      });
    },
  };
}

/** Signs network tokens (one datacenter, one network) with the same keys as transfer tokens. */
export interface NetworkTokenSigner {
  sign(claims: NetworkClaims): Promise<string>;
}

export function networkTokenSigner(keyring: SigningKeyring): NetworkTokenSigner {
  return {
    async sign(claims) {
      const { kid, privateKey } = await keyring.current();
      return signNetworkToken(privateKey, claims, {
        keyId: kid,
        issuer: CONTROL_PLANE_TOKEN_ISSUER,
        lifetimeSeconds: INSTANCE_TOKEN_LIFETIME_SECONDS,
      });
    },
  };
}
