import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { eq } from "drizzle-orm";
import { idSchema } from "../../../schemas/common.ts";
import { ProjectSchema, UpdateProjectSchema } from "../../../schemas/projects.ts";
import { requireScope } from "../../auth.ts";
import { toProject } from "../../catalog/mappers.ts";
import { quotaColumns } from "../../catalog/quotas.ts";
import { projects } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonBody, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "patch",
  path: "/v1/projects/{id}",
  operationId: "updateProject",
  tags: ["admin"],
  summary: "Set a project's quotas (admin); null returns one to the default",
  description:
    "A quota lowered below what the project uses takes nothing away: it refuses what would use more.",
  security: bearerAuth,
  request: { params: z.object({ id: idSchema("project") }), body: jsonBody(UpdateProjectSchema) },
  responses: { 200: jsonResponse(ProjectSchema, "The project."), ...problemResponses(400, 401, 403, 404) },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    requireScope(c, "admin");
    const { id } = c.req.valid("param");
    const body = c.req.valid("json");
    const columns = quotaColumns(body.quotas);
    const { db } = c.get("services");
    const [row] =
      Object.keys(columns).length > 0
        ? await db.update(projects).set(columns).where(eq(projects.id, id)).returning()
        : await db.select().from(projects).where(eq(projects.id, id));
    if (!row) throw errors.notFound("project", id);
    return c.json(toProject(row), 200);
  });
}
