import type { MiddlewareHandler } from "hono";
import { bearerToken } from "../../common/http/bearer.ts";

/**
 * Lets a request through only with a token for the object its path names (`:id`): an
 * instance token on an instance's routes, a network token on a network's.
 */
export function requireObjectToken(verifier: {
  verify(token: string | undefined, id: string): Promise<unknown>;
}): MiddlewareHandler {
  return async (c, next) => {
    await verifier.verify(bearerToken(c.req.header("authorization")), c.req.param("id") ?? "");
    await next();
  };
}
