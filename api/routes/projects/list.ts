import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { asc, gt } from "drizzle-orm";
import { PageQuerySchema, pageOf } from "../../../schemas/common.ts";
import { ProjectSchema } from "../../../schemas/projects.ts";
import { requireScope } from "../../auth.ts";
import { toProject } from "../../catalog/mappers.ts";
import { projects } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";
import { decodePageToken, toPage } from "../../pagination.ts";

export const route = createRoute({
  method: "get",
  path: "/v1/projects",
  operationId: "listProjects",
  tags: ["admin"],
  summary: "List projects (admin)",
  security: bearerAuth,
  request: { query: PageQuerySchema },
  responses: {
    200: jsonResponse(pageOf(ProjectSchema, "ProjectPage"), "A page of projects."),
    ...problemResponses(400, 401, 403),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    requireScope(c, "admin");
    const { page_size, page_token } = c.req.valid("query");
    const after = decodePageToken(page_token, "project");
    const rows = await c
      .get("services")
      .db.select()
      .from(projects)
      .where(after ? gt(projects.id, after) : undefined)
      .orderBy(asc(projects.id))
      .limit(page_size + 1);
    return c.json(toPage(rows, page_size, toProject), 200);
  });
}
