import { createHash, randomBytes } from "node:crypto";
import { eq } from "drizzle-orm";
import type { Context, MiddlewareHandler } from "hono";
import { bearerToken } from "../common/http/bearer.ts";
import type { TokenScope } from "../schemas/projects.ts";
import { apiTokens } from "./catalog/schema.ts";
import type { AppEnv, Principal } from "./env.ts";
import { errors } from "./errors.ts";

export function newTokenSecret(): string {
  return `gvm_${randomBytes(32).toString("base64url")}`;
}

/** Secrets are high-entropy random strings, so a plain SHA-256 is enough (no password hashing). */
export function hashSecret(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

export const authenticate: MiddlewareHandler<AppEnv> = async (c, next) => {
  const header = c.req.header("authorization");
  if (!header) throw errors.unauthenticated();
  const secret = bearerToken(header);
  if (!secret) throw errors.unauthenticated("The Authorization header must be 'Bearer <token>'.");
  const { db } = c.get("services");
  const [token] = await db
    .select({
      id: apiTokens.id,
      projectId: apiTokens.projectId,
      scopes: apiTokens.scopes,
      region: apiTokens.region,
      datacenter: apiTokens.datacenter,
    })
    .from(apiTokens)
    .where(eq(apiTokens.secretHash, hashSecret(secret)))
    .limit(1);
  if (!token) throw errors.unauthenticated("The token is unknown or was revoked.");
  c.set("principal", {
    tokenId: token.id,
    projectId: token.projectId,
    scopes: token.scopes as Principal["scopes"],
    datacenter: token.datacenter && token.region ? { name: token.datacenter, region: token.region } : null,
  });
  await next();
};

function hasScope(principal: Principal, scope: TokenScope): boolean {
  // A manager credential is not a user token: it reaches only the manager endpoints.
  if (principal.scopes.includes("manager")) return false;
  // admin implies read and write; write implies read.
  if (principal.scopes.includes("admin")) return true;
  if (scope === "read") return principal.scopes.includes("read") || principal.scopes.includes("write");
  return principal.scopes.includes(scope);
}

export function requireScope(c: Context<AppEnv>, scope: TokenScope): Principal {
  const principal = c.get("principal");
  if (!hasScope(principal, scope))
    throw errors.forbidden(`This call needs a token with the '${scope}' scope.`);
  return principal;
}

/** Admins, or the manager credential of this very datacenter. */
export function requireManagerOf(c: Context<AppEnv>, datacenter: string): Principal {
  const principal = c.get("principal");
  if (principal.scopes.includes("admin")) return principal;
  if (principal.scopes.includes("manager") && principal.datacenter?.name === datacenter) return principal;
  throw errors.forbidden(
    `This call needs an admin token or the manager credential of datacenter ${datacenter}.`,
  );
}

/** Any regional manager's credential (or an admin). */
export function requireManager(c: Context<AppEnv>): Principal {
  const principal = c.get("principal");
  if (principal.scopes.includes("admin") || principal.scopes.includes("manager")) return principal;
  throw errors.forbidden("This call is for regional managers.");
}

/** Project resources are reached only with a project token; the result scopes every query. */
export function requireProject(c: Context<AppEnv>, scope: "read" | "write"): string {
  const principal = requireScope(c, scope);
  if (!principal.projectId) {
    throw errors.forbidden("Admin tokens belong to no project; use a project token for project resources.");
  }
  return principal.projectId;
}
