import type { CryptoKey, KeyObject } from "jose";
import {
  ControlPlaneTokenError,
  createJwtVerifier,
  type SignOptions,
  signControlPlaneJwt,
  type TransferKeySource,
} from "./control-plane-jwt.ts";

export { ControlPlaneTokenError, type TransferKeySource } from "./control-plane-jwt.ts";

/**
 * Transfer tokens: short-lived JWTs the control plane signs (ES256 or EdDSA) and regional
 * managers verify. Each grants one action on one image version in one datacenter:
 * `upload` (a client sends chunks to the origin manager), `read` (a peer manager pulls
 * chunks from the manager that holds the version), `replicate` (the control plane asks a
 * manager to fetch the version) or `drop` (the control plane asks a manager to let its copy
 * go). The datacenter is the one whose manager accepts the token. An upload token also names
 * the image's project: the manager's answer about which chunks it already holds is scoped
 * to it, and an upload token without one (signed before the claim existed) is refused.
 */
export type TransferAction = "upload" | "read" | "replicate" | "drop";
const ACTIONS: readonly string[] = ["upload", "read", "replicate", "drop"];

export interface TransferClaims {
  imageId: string;
  version: number;
  datacenter: string;
  action: TransferAction;
  /**
   * For `upload`: the most bytes the version may declare (what the project's storage quota
   * leaves, or the size the client declared); absent, only the manager's own limits apply.
   */
  maxBytes?: number;
  /** The image's project; required in upload tokens. */
  projectId?: string;
}

export const TRANSFER_TOKEN_AUDIENCE = "globalvm-regional-manager";
export const DEFAULT_TRANSFER_TOKEN_LIFETIME_SECONDS = 15 * 60;

/** Signs a transfer token (called by the control plane). `keyId` should match the JWKS `kid`. */
export function signTransferToken(
  privateKey: CryptoKey | KeyObject,
  claims: TransferClaims,
  options: SignOptions = {},
): Promise<string> {
  const payload = {
    imageId: claims.imageId,
    version: claims.version,
    datacenter: claims.datacenter,
    action: claims.action,
    ...(claims.maxBytes !== undefined ? { maxBytes: claims.maxBytes } : {}),
    ...(claims.projectId !== undefined ? { projectId: claims.projectId } : {}),
  };
  return signControlPlaneJwt(
    privateKey,
    payload,
    TRANSFER_TOKEN_AUDIENCE,
    DEFAULT_TRANSFER_TOKEN_LIFETIME_SECONDS,
    options,
  );
}

export interface TransferTokenVerifier {
  /** Resolves with the claims when `token` grants `action` on `imageId`/`version` here; throws ControlPlaneTokenError otherwise. */
  verify(
    token: string | undefined,
    expected: Omit<TransferClaims, "datacenter" | "projectId">,
  ): Promise<TransferClaims>;
}

export function createTransferTokenVerifier(options: {
  keys: TransferKeySource;
  datacenter: string;
  issuer?: string;
}): TransferTokenVerifier {
  const verifyJwt = createJwtVerifier(
    options.keys,
    TRANSFER_TOKEN_AUDIENCE,
    options.issuer,
    "transfer token",
  );
  return {
    async verify(token, expected) {
      const claims = checkClaims(await verifyJwt(token));
      if (claims.datacenter !== options.datacenter) {
        throw new ControlPlaneTokenError(
          "TOKEN_WRONG_DATACENTER",
          `the token is for datacenter ${claims.datacenter}`,
        );
      }
      if (claims.imageId !== expected.imageId || claims.version !== expected.version) {
        throw new ControlPlaneTokenError(
          "TOKEN_WRONG_IMAGE",
          `the token is for image ${claims.imageId} version ${claims.version}`,
        );
      }
      if (claims.action !== expected.action) {
        throw new ControlPlaneTokenError(
          "TOKEN_WRONG_ACTION",
          `the token grants ${claims.action}, not ${expected.action}`,
        );
      }
      if (claims.action === "upload" && claims.projectId === undefined) {
        throw new ControlPlaneTokenError(
          "TOKEN_INVALID",
          "the upload token names no project (signed by an older control plane): ask for a new upload ticket",
        );
      }
      return claims;
    },
  };
}

function checkClaims(payload: Record<string, unknown>): TransferClaims {
  const { imageId, version, datacenter, action, maxBytes, projectId } = payload;
  if (
    (maxBytes !== undefined && typeof maxBytes !== "number") ||
    (projectId !== undefined && typeof projectId !== "string") ||
    typeof imageId !== "string" ||
    typeof version !== "number" ||
    typeof datacenter !== "string" ||
    typeof action !== "string" ||
    !ACTIONS.includes(action)
  ) {
    throw new ControlPlaneTokenError(
      "TOKEN_INVALID",
      "the transfer token lacks its image, version, datacenter or action",
    );
  }
  return {
    imageId,
    version,
    datacenter,
    action: action as TransferAction,
    ...(maxBytes !== undefined ? { maxBytes } : {}),
    ...(projectId !== undefined ? { projectId } : {}),
  };
}
