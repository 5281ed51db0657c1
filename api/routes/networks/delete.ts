import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq } from "drizzle-orm";
import { idSchema } from "../../../schemas/common.ts";
import { requireProject } from "../../auth.ts";
import { networks } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "delete",
  path: "/v1/networks/{id}",
  operationId: "deleteNetwork",
  tags: ["networks"],
  summary: "Delete a network",
  security: bearerAuth,
  request: { params: z.object({ id: idSchema("network") }) },
  responses: { 204: { description: "Deleted." }, ...problemResponses(400, 401, 403, 404) },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "write");
    const { id } = c.req.valid("param");
    const [row] = await c
      .get("services")
      .db.delete(networks)
      .where(and(eq(networks.id, id), eq(networks.projectId, projectId)))
      .returning({ id: networks.id });
    if (!row) throw errors.notFound("network", id);
    return c.body(null, 204);
  });
}
