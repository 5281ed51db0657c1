import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { PageQuerySchema, pageOf } from "../../../schemas/common.ts";
import { OperationSchema } from "../../../schemas/operations.ts";
import { requireScope } from "../../auth.ts";
import { listOperations, toOperation } from "../../catalog/operations.ts";
import type { AppEnv } from "../../env.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";
import { decodePageToken, toPage } from "../../pagination.ts";

export const route = createRoute({
  method: "get",
  path: "/v1/operations",
  operationId: "listOperations",
  tags: ["operations"],
  summary: "List operations, oldest first (a project token sees its project's)",
  security: bearerAuth,
  request: { query: PageQuerySchema },
  responses: {
    200: jsonResponse(pageOf(OperationSchema, "OperationPage"), "A page of operations."),
    ...problemResponses(400, 401, 403),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const principal = requireScope(c, "read");
    const { page_size, page_token } = c.req.valid("query");
    const after = decodePageToken(page_token, "operation");
    const rows = await listOperations(c.get("services").db, principal.projectId, after, page_size + 1);
    return c.json(toPage(rows, page_size, toOperation), 200);
  });
}
