import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { and, asc, eq, gt } from "drizzle-orm";
import { NameSchema, PageQuerySchema, pageOf } from "../../../schemas/common.ts";
import { NetworkSchema } from "../../../schemas/networks.ts";
import { requireProject } from "../../auth.ts";
import { toNetwork } from "../../catalog/mappers.ts";
import { networks } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";
import { decodePageToken, toPage } from "../../pagination.ts";

export const route = createRoute({
  method: "get",
  path: "/v1/networks",
  operationId: "listNetworks",
  tags: ["networks"],
  summary: "List the project's networks, optionally by name",
  security: bearerAuth,
  request: { query: PageQuerySchema.extend({ name: NameSchema.optional() }) },
  responses: {
    200: jsonResponse(pageOf(NetworkSchema, "NetworkPage"), "A page of networks."),
    ...problemResponses(400, 401, 403),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "read");
    const { page_size, page_token, name } = c.req.valid("query");
    const after = decodePageToken(page_token, "network");
    const rows = await c
      .get("services")
      .db.select()
      .from(networks)
      .where(
        and(
          eq(networks.projectId, projectId),
          name ? eq(networks.name, name) : undefined,
          after ? gt(networks.id, after) : undefined,
        ),
      )
      .orderBy(asc(networks.id))
      .limit(page_size + 1);
    return c.json(toPage(rows, page_size, toNetwork), 200);
  });
}
