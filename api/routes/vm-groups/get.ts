import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { idSchema } from "../../../schemas/common.ts";
import { VmGroupSchema } from "../../../schemas/vm-groups.ts";
import { requireProject } from "../../auth.ts";
import { toVmGroup } from "../../catalog/mappers.ts";
import { findVmGroup } from "../../catalog/vm-groups.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "get",
  path: "/v1/vm-groups/{id}",
  operationId: "getVmGroup",
  tags: ["vm-groups"],
  summary: "Get a VM group",
  security: bearerAuth,
  request: { params: z.object({ id: idSchema("vmGroup") }) },
  responses: { 200: jsonResponse(VmGroupSchema, "The VM group."), ...problemResponses(400, 401, 403, 404) },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "read");
    const { id } = c.req.valid("param");
    const row = await findVmGroup(c.get("services").db, projectId, id);
    if (!row) throw errors.notFound("VM group", id);
    return c.json(toVmGroup(row), 200);
  });
}
