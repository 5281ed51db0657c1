import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { eq } from "drizzle-orm";
import { idSchema } from "../../../schemas/common.ts";
import { ProjectSchema } from "../../../schemas/projects.ts";
import { requireScope } from "../../auth.ts";
import { toProject } from "../../catalog/mappers.ts";
import { projects } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "get",
  path: "/v1/projects/{id}",
  operationId: "getProject",
  tags: ["admin"],
  summary: "Get a project (admin, or a token of that project)",
  security: bearerAuth,
  request: { params: z.object({ id: idSchema("project") }) },
  responses: { 200: jsonResponse(ProjectSchema, "The project."), ...problemResponses(400, 401, 403, 404) },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const principal = requireScope(c, "read");
    const { id } = c.req.valid("param");
    if (principal.projectId !== null && principal.projectId !== id) throw errors.notFound("project", id);
    const [row] = await c.get("services").db.select().from(projects).where(eq(projects.id, id)).limit(1);
    if (!row) throw errors.notFound("project", id);
    return c.json(toProject(row), 200);
  });
}
