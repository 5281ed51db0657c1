import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
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
  summary:
    "List operations, oldest first (a project token sees its project's), optionally of one target or only those still running",
  security: bearerAuth,
  request: {
    query: PageQuerySchema.extend({
      target_id: z
        .string()
        .min(1)
        .max(64)
        .optional()
        .openapi({ description: "Only the operations on this image or VM group (its ID)." }),
      done: z.enum(["true", "false"]).optional().openapi({
        description: "`false`: only operations still pending or running; `true`: only finished ones.",
      }),
    }),
  },
  responses: {
    200: jsonResponse(pageOf(OperationSchema, "OperationPage"), "A page of operations."),
    ...problemResponses(400, 401, 403),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const principal = requireScope(c, "read");
    const { page_size, page_token, target_id, done } = c.req.valid("query");
    const after = decodePageToken(page_token, "operation");
    const rows = await listOperations(c.get("services").db, principal.projectId, after, page_size + 1, {
      ...(target_id ? { targetId: target_id } : {}),
      ...(done ? { done: done === "true" } : {}),
    });
    return c.json(toPage(rows, page_size, toOperation), 200);
  });
}
