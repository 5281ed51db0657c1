// What transfer tokens and instance tokens share: short-lived JWTs the control plane signs
// with its keys (ES256 or EdDSA) and regional managers verify against its public keys.
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

export type TokenErrorCode =
  | "TOKEN_MISSING"
  | "TOKEN_INVALID"
  | "TOKEN_EXPIRED"
  | "TOKEN_WRONG_IMAGE"
  | "TOKEN_WRONG_INSTANCE"
  | "TOKEN_WRONG_DATACENTER"
  | "TOKEN_WRONG_ACTION";

export class TransferTokenError extends Error {
  readonly code: TokenErrorCode;
  constructor(code: TokenErrorCode, message: string) {
    super(message);
    this.name = "TransferTokenError";
    this.code = code;
  }
}

/** Where a manager gets the control plane's public keys: a JWKS URL, a JWKS, or one key. */
export type TransferKeySource =
  | { jwksUrl: string | URL }
  | { jwks: JSONWebKeySet }
  | { publicKey: CryptoKey | KeyObject };

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
  const getKey: JWTVerifyGetKey | CryptoKey | KeyObject =
    "jwksUrl" in keys
      ? createRemoteJWKSet(new URL(keys.jwksUrl))
      : "jwks" in keys
        ? createLocalJWKSet(keys.jwks)
        : keys.publicKey;
  return async (token: string | undefined): Promise<Record<string, unknown>> => {
    if (!token) throw new TransferTokenError("TOKEN_MISSING", `${what} is required`);
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
        throw new TransferTokenError("TOKEN_EXPIRED", `the ${what} has expired`);
      throw new TransferTokenError("TOKEN_INVALID", `the ${what} is not valid`);
    }
  };
}
