import type { MiddlewareHandler } from "hono";
import { bearerToken } from "../../common/http/bearer.ts";
import type { InstanceTokenVerifier } from "../../common/tokens/instance-token.ts";

/** Lets a request through only with an instance token for the instance its path names. */
export function requireInstanceToken(verifier: InstanceTokenVerifier): MiddlewareHandler {
  return async (c, next) => {
    await verifier.verify(bearerToken(c.req.header("authorization")), c.req.param("id") ?? "");
    await next();
  };
}
