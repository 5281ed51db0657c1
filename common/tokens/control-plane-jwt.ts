// What transfer tokens and instance tokens share: short-lived JWTs the control plane signs
// with its keys (ES256 or EdDSA) and regional managers verify against its public keys.
import { readFileSync } from "node:fs";
import { setTimeout as delay } from "node:timers/promises";
import {
  type CryptoKey,
  createLocalJWKSet,
  createRemoteJWKSet,
  errors,
  type JSONWebKeySet,
  type JWTVerifyGetKey,
  jwtVerify,
  type KeyObject,
  SignJWT,
} from "jose";
import { ConfigurationError } from "../configuration-error.ts";

/** The `iss` of every token the control plane signs; managers refuse any other. */
export const CONTROL_PLANE_TOKEN_ISSUER = "globalvm-control-plane";

export type TokenErrorCode =
  | "TOKEN_MISSING"
  | "TOKEN_INVALID"
  | "TOKEN_EXPIRED"
  | "TOKEN_WRONG_IMAGE"
  | "TOKEN_WRONG_INSTANCE"
  | "TOKEN_WRONG_NETWORK"
  | "TOKEN_WRONG_DATACENTER"
  | "TOKEN_WRONG_ACTION";

export class ControlPlaneTokenError extends Error {
  readonly code: TokenErrorCode;
  constructor(code: TokenErrorCode, message: string) {
    super(message);
    this.name = "ControlPlaneTokenError";
    this.code = code;
  }
}

/**
 * Where a manager gets the control plane's public keys: a JWKS URL (fetched, refreshed on an
 * unknown kid), a pinned JWKS file (re-read on an unknown kid), a JWKS, one key, or a key
 * getter made once by controlPlaneKeys and shared by several verifiers.
 */
export type TransferKeySource =
  | { jwksUrl: string | URL }
  | { jwksFile: string }
  | { jwks: JSONWebKeySet }
  | { publicKey: CryptoKey | KeyObject }
  | { getKey: JWTVerifyGetKey };

/**
 * How soon a manager looks again for a kid it does not know: a token signed by a key the
 * control plane just rotated in is accepted within this time. It also bounds how often
 * tokens with made-up kids can make it fetch.
 */
export const UNKNOWN_KID_RECHECK_MS = 1_000;

/** A getter that looks again (once, waiting out the recheck interval) when `current` does not know the token's kid. */
function recheckingOnUnknownKid(
  current: JWTVerifyGetKey,
  recheck: () => Promise<JWTVerifyGetKey>,
): JWTVerifyGetKey {
  let lastCheck = Date.now();
  let pending: Promise<JWTVerifyGetKey> | undefined;
  return async (header, token) => {
    try {
      return await current(header, token);
    } catch (error) {
      if (!(error instanceof errors.JWKSNoMatchingKey)) throw error;
      // Concurrent tokens with the new kid share one look.
      pending ??= (async () => {
        await delay(Math.max(0, lastCheck + UNKNOWN_KID_RECHECK_MS - Date.now()));
        current = await recheck();
        lastCheck = Date.now();
        return current;
      })().finally(() => {
        pending = undefined;
      });
      return (await pending)(header, token);
    }
  };
}

/** How long fetched keys are trusted without a fetch: a key that left the JWKS stops verifying here within it. */
const JWKS_MAX_AGE_MS = 60_000;

function remoteKeys(url: URL): JWTVerifyGetKey {
  const remote = createRemoteJWKSet(url, {
    cooldownDuration: UNKNOWN_KID_RECHECK_MS,
    cacheMaxAge: JWKS_MAX_AGE_MS,
  });
  return recheckingOnUnknownKid(remote, async () => {
    await remote.reload();
    return remote;
  });
}

/** A pinned JWKS file: only public keys, read now (a bad file fails the start) and again on an unknown kid. */
function readPinnedJwks(path: string): JSONWebKeySet {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new ConfigurationError(
      `--control-plane-keys: ${path} is not a readable JSON file: ${(error as Error).message}`,
    );
  }
  const keys = (parsed as { keys?: unknown }).keys;
  if (!Array.isArray(keys) || keys.length === 0) {
    throw new ConfigurationError(
      `--control-plane-keys: ${path} is not a JWKS: it needs a non-empty "keys" array (save the control plane's /.well-known/jwks.json)`,
    );
  }
  if (keys.some((key) => typeof key !== "object" || key === null || "d" in key)) {
    throw new ConfigurationError(
      `--control-plane-keys: ${path} must hold public keys only (one has a private "d" parameter)`,
    );
  }
  return { keys } as JSONWebKeySet;
}

function pinnedKeys(path: string): JWTVerifyGetKey {
  return recheckingOnUnknownKid(createLocalJWKSet(readPinnedJwks(path)), async () =>
    createLocalJWKSet(readPinnedJwks(path)),
  );
}

/** A manager's key lookup, fetched or pinned; made once so that its verifiers share one cache. */
export function controlPlaneKeys(keys: { jwksUrl: string | URL } | { jwksFile: string }): JWTVerifyGetKey {
  return "jwksUrl" in keys ? remoteKeys(new URL(keys.jwksUrl)) : pinnedKeys(keys.jwksFile);
}

function keyLookup(keys: TransferKeySource): JWTVerifyGetKey | CryptoKey | KeyObject {
  if ("jwksUrl" in keys || "jwksFile" in keys) return controlPlaneKeys(keys);
  if ("jwks" in keys) return createLocalJWKSet(keys.jwks);
  if ("getKey" in keys) return keys.getKey;
  return keys.publicKey;
}

export interface SignOptions {
  lifetimeSeconds?: number;
  keyId?: string;
  issuer?: string;
}

function algorithmOf(key: CryptoKey | KeyObject): "ES256" | "EdDSA" {
  const type = "asymmetricKeyType" in key ? key.asymmetricKeyType : (key as CryptoKey).algorithm.name;
  if (type === "ed25519" || type === "Ed25519") return "EdDSA";
  if (type === "ec" || type === "ECDSA") return "ES256";
  throw new TypeError(`control-plane tokens are signed with Ed25519 or P-256 keys, not ${String(type)}`);
}

export function signControlPlaneJwt(
  privateKey: CryptoKey | KeyObject,
  payload: Record<string, unknown>,
  audience: string,
  lifetimeSeconds: number,
  options: SignOptions,
): Promise<string> {
  const jwt = new SignJWT(payload)
    .setProtectedHeader({ alg: algorithmOf(privateKey), ...(options.keyId ? { kid: options.keyId } : {}) })
    .setAudience(audience)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + (options.lifetimeSeconds ?? lifetimeSeconds));
  if (options.issuer) jwt.setIssuer(options.issuer);
  return jwt.sign(privateKey);
}

/** Verifies signature, audience, issuer and expiry; returns the payload for the caller's claims checks. */
export function createJwtVerifier(
  keys: TransferKeySource,
  audience: string,
  issuer: string | undefined,
  what: string,
) {
  const getKey = keyLookup(keys);
  return async (token: string | undefined): Promise<Record<string, unknown>> => {
    if (!token) throw new ControlPlaneTokenError("TOKEN_MISSING", `${what} is required`);
    try {
      const result = await jwtVerify(token, getKey as JWTVerifyGetKey, {
        algorithms: ["ES256", "EdDSA"],
        audience,
        requiredClaims: ["exp"],
        ...(issuer ? { issuer } : {}),
      });
      return result.payload;
    } catch (error) {
      if (error instanceof errors.JWTExpired)
        throw new ControlPlaneTokenError("TOKEN_EXPIRED", `the ${what} has expired`);
      throw new ControlPlaneTokenError("TOKEN_INVALID", `the ${what} is not valid`);
    }
  };
}
