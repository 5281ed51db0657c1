import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq } from "drizzle-orm";
import { idSchema } from "../../../schemas/common.ts";
import { requireScope } from "../../auth.ts";
import { apiTokens } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "delete",
  path: "/v1/tokens/{id}",
  operationId: "revokeToken",
  tags: ["admin"],
  summary: "Revoke a token (admin)",
  security: bearerAuth,
  request: { params: z.object({ id: idSchema("token") }) },
  responses: { 204: { description: "Revoked." }, ...problemResponses(400, 401, 403, 404, 409) },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const principal = requireScope(c, "admin");
    const { id } = c.req.valid("param");
    if (id === principal.tokenId) throw errors.conflict("token_in_use", "A token cannot revoke itself.");
    const deleted = await c
      .get("services")
      .db.delete(apiTokens)
      .where(and(eq(apiTokens.id, id), eq(apiTokens.bootstrap, false)))
      .returning({ id: apiTokens.id });
    if (deleted.length === 0) throw errors.notFound("token", id);
    return c.body(null, 204);
  });
}
