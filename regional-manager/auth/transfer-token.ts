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

/**
 * Transfer tokens: short-lived JWTs the control plane signs (ES256 or EdDSA) and regional
 * managers verify. Each grants one action on one image version in one datacenter:
 * `upload` (a client sends chunks to the origin manager), `read` (a peer manager pulls
 * chunks from the manager that holds the version) or `replicate` (the control plane asks a
 * manager to fetch the version). The datacenter is the one whose manager accepts the token.
 */
export type TransferAction = "upload" | "read" | "replicate";
const ACTIONS: readonly string[] = ["upload", "read", "replicate"];

export interface TransferClaims {
  imageId: string;
  version: number;
  datacenter: string;
  action: TransferAction;
}

export const TRANSFER_TOKEN_AUDIENCE = "globalvm-regional-manager";
export const DEFAULT_TRANSFER_TOKEN_LIFETIME_SECONDS = 15 * 60;
const ALGORITHMS = ["ES256", "EdDSA"];

export type TransferTokenErrorCode =
  | "TOKEN_MISSING"
  | "TOKEN_INVALID"
  | "TOKEN_EXPIRED"
  | "TOKEN_WRONG_IMAGE"
  | "TOKEN_WRONG_DATACENTER"
  | "TOKEN_WRONG_ACTION";

export class TransferTokenError extends Error {
  readonly code: TransferTokenErrorCode;
  constructor(code: TransferTokenErrorCode, message: string) {
    super(message);
    this.name = "TransferTokenError";
    this.code = code;
  }
}

function algorithmOf(key: CryptoKey | KeyObject): "ES256" | "EdDSA" {
  const type = "asymmetricKeyType" in key ? key.asymmetricKeyType : (key as CryptoKey).algorithm.name;
  if (type === "ed25519" || type === "Ed25519") return "EdDSA";
  if (type === "ec" || type === "ECDSA") return "ES256";
  throw new TypeError(`transfer tokens are signed with Ed25519 or P-256 keys, not ${String(type)}`);
}

/** Signs a transfer token (called by the control plane). `keyId` should match the JWKS `kid`. */
export async function signTransferToken(
  privateKey: CryptoKey | KeyObject,
  claims: TransferClaims,
  options: { lifetimeSeconds?: number; keyId?: string; issuer?: string } = {},
): Promise<string> {
  const lifetime = options.lifetimeSeconds ?? DEFAULT_TRANSFER_TOKEN_LIFETIME_SECONDS;
  const jwt = new SignJWT({
    imageId: claims.imageId,
    version: claims.version,
    datacenter: claims.datacenter,
    action: claims.action,
  })
    .setProtectedHeader({ alg: algorithmOf(privateKey), ...(options.keyId ? { kid: options.keyId } : {}) })
    .setAudience(TRANSFER_TOKEN_AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + lifetime);
  if (options.issuer) jwt.setIssuer(options.issuer);
  return jwt.sign(privateKey);
}

/** Where a manager gets the control plane's public keys: a JWKS URL, a JWKS, or one key. */
export type TransferKeySource =
  | { jwksUrl: string | URL }
  | { jwks: JSONWebKeySet }
  | { publicKey: CryptoKey | KeyObject };

export interface TransferTokenVerifier {
  /** Resolves with the claims when `token` grants `action` on `imageId`/`version` here; throws TransferTokenError otherwise. */
  verify(token: string | undefined, expected: Omit<TransferClaims, "datacenter">): Promise<TransferClaims>;
}

export function createTransferTokenVerifier(options: {
  keys: TransferKeySource;
  datacenter: string;
  issuer?: string;
}): TransferTokenVerifier {
  const keys = options.keys;
  const getKey: JWTVerifyGetKey | CryptoKey | KeyObject =
    "jwksUrl" in keys
      ? createRemoteJWKSet(new URL(keys.jwksUrl))
      : "jwks" in keys
        ? createLocalJWKSet(keys.jwks)
        : keys.publicKey;
  return {
    async verify(token, expected) {
      if (!token) throw new TransferTokenError("TOKEN_MISSING", "a transfer token is required");
      let payload: Record<string, unknown>;
      try {
        const result = await jwtVerify(token, getKey as JWTVerifyGetKey, {
          algorithms: ALGORITHMS,
          audience: TRANSFER_TOKEN_AUDIENCE,
          requiredClaims: ["exp"],
          ...(options.issuer ? { issuer: options.issuer } : {}),
        });
        payload = result.payload;
      } catch (error) {
        if (error instanceof errors.JWTExpired)
          throw new TransferTokenError("TOKEN_EXPIRED", "the transfer token has expired");
        throw new TransferTokenError("TOKEN_INVALID", "the transfer token is not valid");
      }
      const claims = checkClaims(payload);
      if (claims.datacenter !== options.datacenter) {
        throw new TransferTokenError(
          "TOKEN_WRONG_DATACENTER",
          `the token is for datacenter ${claims.datacenter}`,
        );
      }
      if (claims.imageId !== expected.imageId || claims.version !== expected.version) {
        throw new TransferTokenError(
          "TOKEN_WRONG_IMAGE",
          `the token is for image ${claims.imageId} version ${claims.version}`,
        );
      }
      if (claims.action !== expected.action) {
        throw new TransferTokenError(
          "TOKEN_WRONG_ACTION",
          `the token grants ${claims.action}, not ${expected.action}`,
        );
      }
      return claims;
    },
  };
}

function checkClaims(payload: Record<string, unknown>): TransferClaims {
  const { imageId, version, datacenter, action } = payload;
  if (
    typeof imageId !== "string" ||
    typeof version !== "number" ||
    typeof datacenter !== "string" ||
    typeof action !== "string" ||
    !ACTIONS.includes(action)
  ) {
    throw new TransferTokenError(
      "TOKEN_INVALID",
      "the transfer token lacks its image, version, datacenter or action",
    );
  }
  return { imageId, version, datacenter, action: action as TransferAction };
}
