import type { CryptoKey, KeyObject } from "jose";
import type { SignOptions, TransferKeySource } from "./control-plane-jwt.ts";
import {
  createObjectTokenVerifier,
  type ObjectClaims,
  type ObjectTokenKind,
  type ObjectTokenVerifier,
  signObjectToken,
} from "./object-token.ts";

/** Network tokens let one regional manager take what one network needs on its hosts (its firewall). */
export const NETWORK_TOKEN_AUDIENCE = "globalvm-regional-manager-networks";
export const DEFAULT_NETWORK_TOKEN_LIFETIME_SECONDS = 5 * 60;

const NETWORK_TOKENS: ObjectTokenKind<"networkId"> = {
  subject: "networkId",
  action: "network",
  audience: NETWORK_TOKEN_AUDIENCE,
  what: "network token",
  wrongSubject: "TOKEN_WRONG_NETWORK",
  defaultLifetimeSeconds: DEFAULT_NETWORK_TOKEN_LIFETIME_SECONDS,
};

export type NetworkClaims = ObjectClaims<"networkId">;
export type NetworkTokenVerifier = ObjectTokenVerifier<"networkId">;

/** Signs a network token (called by the control plane). */
export function signNetworkToken(
  privateKey: CryptoKey | KeyObject,
  claims: NetworkClaims,
  options: SignOptions = {},
): Promise<string> {
  return signObjectToken(NETWORK_TOKENS, privateKey, claims, options);
}

export function createNetworkTokenVerifier(options: {
  keys: TransferKeySource;
  datacenter: string;
  issuer?: string;
}): NetworkTokenVerifier {
  return createObjectTokenVerifier(NETWORK_TOKENS, options);
}
