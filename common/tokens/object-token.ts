import type { CryptoKey, KeyObject } from "jose";
import {
  ControlPlaneTokenError,
  createJwtVerifier,
  type SignOptions,
  signControlPlaneJwt,
  type TokenErrorCode,
  type TransferKeySource,
} from "./control-plane-jwt.ts";

/**
 * A kind of token for one object in one datacenter (an instance, a network): a short-lived JWT
 * the control plane signs with the keys of its transfer tokens (published in its JWKS) to let
 * that datacenter's manager act on the object. Each kind has its own audience and `action`
 * claim, so no token of one kind passes for another.
 */
export interface ObjectTokenKind<S extends string> {
  /** The claim naming the object, e.g. `instanceId`. */
  subject: S;
  action: string;
  audience: string;
  /** How errors name the token ("instance token"). */
  what: string;
  /** The error of a token for another object of the kind. */
  wrongSubject: TokenErrorCode;
  defaultLifetimeSeconds: number;
}

export type ObjectClaims<S extends string> = { [K in S]: string } & { datacenter: string };

export interface ObjectTokenVerifier<S extends string> {
  /** Resolves when `token` lets this manager act on the object `id`; throws ControlPlaneTokenError otherwise. */
  verify(token: string | undefined, id: string): Promise<ObjectClaims<S>>;
}

export function signObjectToken<S extends string>(
  kind: ObjectTokenKind<S>,
  privateKey: CryptoKey | KeyObject,
  claims: ObjectClaims<S>,
  options: SignOptions = {},
): Promise<string> {
  const payload = {
    action: kind.action,
    [kind.subject]: claims[kind.subject],
    datacenter: claims.datacenter,
  };
  return signControlPlaneJwt(privateKey, payload, kind.audience, kind.defaultLifetimeSeconds, options);
}

export function createObjectTokenVerifier<S extends string>(
  kind: ObjectTokenKind<S>,
  options: { keys: TransferKeySource; datacenter: string; issuer?: string },
): ObjectTokenVerifier<S> {
  const verifyJwt = createJwtVerifier(options.keys, kind.audience, options.issuer, kind.what);
  return {
    async verify(token, id) {
      const payload = await verifyJwt(token);
      const { action, datacenter } = payload;
      const claimed = payload[kind.subject];
      if (action !== kind.action || typeof claimed !== "string" || typeof datacenter !== "string") {
        const article = /^[aeiou]/.test(kind.what) ? "an" : "a";
        throw new ControlPlaneTokenError("TOKEN_INVALID", `the token is not ${article} ${kind.what}`);
      }
      if (datacenter !== options.datacenter) {
        throw new ControlPlaneTokenError(
          "TOKEN_WRONG_DATACENTER",
          `the token is for datacenter ${datacenter}`,
        );
      }
      if (claimed !== id) {
        throw new ControlPlaneTokenError(
          kind.wrongSubject,
          `the token is for ${kind.what.split(" ")[0]} ${claimed}`,
        );
      }
      return { [kind.subject]: claimed, datacenter } as ObjectClaims<S>;
    },
  };
}
