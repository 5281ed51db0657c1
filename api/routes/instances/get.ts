import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq } from "drizzle-orm";
import { idSchema } from "../../../schemas/common.ts";
import { InstanceSchema } from "../../../schemas/instances.ts";
import { requireProject } from "../../auth.ts";
import { toInstance } from "../../catalog/mappers.ts";
import { instances, vmGroups } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "get",
  path: "/v1/instances/{id}",
  operationId: "getInstance",
  tags: ["vm-groups"],
  summary: "Get an instance: state, address, guest attributes, boot log tail",
  security: bearerAuth,
  request: { params: z.object({ id: idSchema("instance") }) },
  responses: { 200: jsonResponse(InstanceSchema, "The instance."), ...problemResponses(400, 401, 403, 404) },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "read");
    const { id } = c.req.valid("param");
    const [row] = await c
      .get("services")
      .db.select({ instance: instances, groupName: vmGroups.name })
      .from(instances)
      .innerJoin(vmGroups, eq(vmGroups.id, instances.vmGroupId))
      .where(and(eq(instances.id, id), eq(vmGroups.projectId, projectId)))
      .limit(1);
    if (!row) throw errors.notFound("instance", id);
    return c.json(toInstance(row.instance, row.groupName), 200);
  });
}
