import type { CryptoKey, KeyObject } from "jose";
import type { SignOptions, TransferKeySource } from "./control-plane-jwt.ts";
import {
  createObjectTokenVerifier,
  type ObjectClaims,
  type ObjectTokenKind,
  type ObjectTokenVerifier,
  signObjectToken,
} from "./object-token.ts";

/**
 * Instance tokens let one regional manager act on one instance: create and start it, stop it,
 * delete it, read its status, change its metadata.
 */
export const INSTANCE_TOKEN_AUDIENCE = "globalvm-regional-manager-instances";
export const DEFAULT_INSTANCE_TOKEN_LIFETIME_SECONDS = 5 * 60;

const INSTANCE_TOKENS: ObjectTokenKind<"instanceId"> = {
  subject: "instanceId",
  action: "instance",
  audience: INSTANCE_TOKEN_AUDIENCE,
  what: "instance token",
  wrongSubject: "TOKEN_WRONG_INSTANCE",
  defaultLifetimeSeconds: DEFAULT_INSTANCE_TOKEN_LIFETIME_SECONDS,
};

export type InstanceClaims = ObjectClaims<"instanceId">;
export type InstanceTokenVerifier = ObjectTokenVerifier<"instanceId">;

/** Signs an instance token (called by the control plane). */
export function signInstanceToken(
  privateKey: CryptoKey | KeyObject,
  claims: InstanceClaims,
  options: SignOptions = {},
): Promise<string> {
  return signObjectToken(INSTANCE_TOKENS, privateKey, claims, options);
}

export function createInstanceTokenVerifier(options: {
  keys: TransferKeySource;
  datacenter: string;
  issuer?: string;
}): InstanceTokenVerifier {
  return createObjectTokenVerifier(INSTANCE_TOKENS, options);
}
