import {
  type CryptoKey,
  createLocalJWKSet,
  createRemoteJWKSet,
  errors,
  type JWTVerifyGetKey,
  jwtVerify,
  type KeyObject,
  SignJWT,
} from "jose";
import { type TransferKeySource, TransferTokenError } from "./transfer-token.ts";

/**
 * Instance tokens: short-lived JWTs the control plane signs (with the keys of its transfer
 * tokens, published in its JWKS) to let one regional manager act on one instance: create and
 * start it, stop it, delete it, read its status, change its metadata. The claim
 * `action: "instance"` keeps them apart from transfer tokens (which no action of theirs grants).
 */
export interface InstanceClaims {
  instanceId: string;
  datacenter: string;
}

export const INSTANCE_TOKEN_AUDIENCE = "globalvm-regional-manager-instances";
export const DEFAULT_INSTANCE_TOKEN_LIFETIME_SECONDS = 5 * 60;
const ACTION = "instance";

function algorithmOf(key: CryptoKey | KeyObject): "ES256" | "EdDSA" {
  const type = "asymmetricKeyType" in key ? key.asymmetricKeyType : (key as CryptoKey).algorithm.name;
  if (type === "ed25519" || type === "Ed25519") return "EdDSA";
  if (type === "ec" || type === "ECDSA") return "ES256";
  throw new TypeError(`instance tokens are signed with Ed25519 or P-256 keys, not ${String(type)}`);
}

/** Signs an instance token (called by the control plane). */
export async function signInstanceToken(
  privateKey: CryptoKey | KeyObject,
  claims: InstanceClaims,
  options: { lifetimeSeconds?: number; keyId?: string; issuer?: string } = {},
): Promise<string> {
  const lifetime = options.lifetimeSeconds ?? DEFAULT_INSTANCE_TOKEN_LIFETIME_SECONDS;
  const jwt = new SignJWT({ action: ACTION, instanceId: claims.instanceId, datacenter: claims.datacenter })
    .setProtectedHeader({ alg: algorithmOf(privateKey), ...(options.keyId ? { kid: options.keyId } : {}) })
    .setAudience(INSTANCE_TOKEN_AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + lifetime);
  if (options.issuer) jwt.setIssuer(options.issuer);
  return jwt.sign(privateKey);
}

export interface InstanceTokenVerifier {
  /** Resolves when `token` lets this manager act on `instanceId`; throws TransferTokenError otherwise. */
  verify(token: string | undefined, instanceId: string): Promise<InstanceClaims>;
}

export function createInstanceTokenVerifier(options: {
  keys: TransferKeySource;
  datacenter: string;
  issuer?: string;
}): InstanceTokenVerifier {
  const keys = options.keys;
  const getKey: JWTVerifyGetKey | CryptoKey | KeyObject =
    "jwksUrl" in keys
      ? createRemoteJWKSet(new URL(keys.jwksUrl))
      : "jwks" in keys
        ? createLocalJWKSet(keys.jwks)
        : keys.publicKey;
  return {
    async verify(token, instanceId) {
      if (!token) throw new TransferTokenError("TOKEN_MISSING", "an instance token is required");
      let payload: Record<string, unknown>;
      try {
        const result = await jwtVerify(token, getKey as JWTVerifyGetKey, {
          algorithms: ["ES256", "EdDSA"],
          audience: INSTANCE_TOKEN_AUDIENCE,
          requiredClaims: ["exp"],
          ...(options.issuer ? { issuer: options.issuer } : {}),
        });
        payload = result.payload;
      } catch (error) {
        if (error instanceof errors.JWTExpired)
          throw new TransferTokenError("TOKEN_EXPIRED", "the instance token has expired");
        throw new TransferTokenError("TOKEN_INVALID", "the instance token is not valid");
      }
      const { action, instanceId: claimed, datacenter } = payload;
      if (action !== ACTION || typeof claimed !== "string" || typeof datacenter !== "string") {
        throw new TransferTokenError("TOKEN_INVALID", "the token is not an instance token");
      }
      if (datacenter !== options.datacenter) {
        throw new TransferTokenError("TOKEN_WRONG_DATACENTER", `the token is for datacenter ${datacenter}`);
      }
      if (claimed !== instanceId) {
        throw new TransferTokenError("TOKEN_WRONG_IMAGE", `the token is for instance ${claimed}`);
      }
      return { instanceId: claimed, datacenter };
    },
  };
}
