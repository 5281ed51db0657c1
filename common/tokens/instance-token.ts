import type { CryptoKey, KeyObject } from "jose";
import {
  ControlPlaneTokenError,
  createJwtVerifier,
  type SignOptions,
  signControlPlaneJwt,
  type TransferKeySource,
} from "./control-plane-jwt.ts";

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

/** Signs an instance token (called by the control plane). */
export function signInstanceToken(
  privateKey: CryptoKey | KeyObject,
  claims: InstanceClaims,
  options: SignOptions = {},
): Promise<string> {
  const payload = { action: ACTION, instanceId: claims.instanceId, datacenter: claims.datacenter };
  return signControlPlaneJwt(
    privateKey,
    payload,
    INSTANCE_TOKEN_AUDIENCE,
    DEFAULT_INSTANCE_TOKEN_LIFETIME_SECONDS,
    options,
  );
}

export interface InstanceTokenVerifier {
  /** Resolves when `token` lets this manager act on `instanceId`; throws ControlPlaneTokenError otherwise. */
  verify(token: string | undefined, instanceId: string): Promise<InstanceClaims>;
}

export function createInstanceTokenVerifier(options: {
  keys: TransferKeySource;
  datacenter: string;
  issuer?: string;
}): InstanceTokenVerifier {
  const verifyJwt = createJwtVerifier(
    options.keys,
    INSTANCE_TOKEN_AUDIENCE,
    options.issuer,
    "instance token",
  );
  return {
    async verify(token, instanceId) {
      const { action, instanceId: claimed, datacenter } = await verifyJwt(token);
      if (action !== ACTION || typeof claimed !== "string" || typeof datacenter !== "string") {
        throw new ControlPlaneTokenError("TOKEN_INVALID", "the token is not an instance token");
      }
      if (datacenter !== options.datacenter) {
        throw new ControlPlaneTokenError(
          "TOKEN_WRONG_DATACENTER",
          `the token is for datacenter ${datacenter}`,
        );
      }
      if (claimed !== instanceId) {
        throw new ControlPlaneTokenError("TOKEN_WRONG_INSTANCE", `the token is for instance ${claimed}`);
      }
      return { instanceId: claimed, datacenter };
    },
  };
}
