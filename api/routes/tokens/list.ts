import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, asc, eq, gt } from "drizzle-orm";
import { idSchema, PageQuerySchema, pageOf } from "../../../schemas/common.ts";
import { TokenSchema } from "../../../schemas/projects.ts";
import { requireScope } from "../../auth.ts";
import { toToken } from "../../catalog/mappers.ts";
import { apiTokens } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";
import { decodePageToken, toPage } from "../../pagination.ts";

export const route = createRoute({
  method: "get",
  path: "/v1/projects/{id}/tokens",
  operationId: "listProjectTokens",
  tags: ["admin"],
  summary: "List a project's tokens (admin); secrets are never shown again",
  security: bearerAuth,
  request: { params: z.object({ id: idSchema("project") }), query: PageQuerySchema },
  responses: {
    200: jsonResponse(pageOf(TokenSchema, "TokenPage"), "A page of tokens."),
    ...problemResponses(400, 401, 403),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    requireScope(c, "admin");
    const { id } = c.req.valid("param");
    const { page_size, page_token } = c.req.valid("query");
    const after = decodePageToken(page_token, "token");
    const rows = await c
      .get("services")
      .db.select()
      .from(apiTokens)
      .where(and(eq(apiTokens.projectId, id), after ? gt(apiTokens.id, after) : undefined))
      .orderBy(asc(apiTokens.id))
      .limit(page_size + 1);
    return c.json(toPage(rows, page_size, toToken), 200);
  });
}
