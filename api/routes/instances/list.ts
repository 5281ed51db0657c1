import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, asc, eq, gt } from "drizzle-orm";
import { idSchema, PageQuerySchema, pageOf } from "../../../schemas/common.ts";
import { InstanceSchema } from "../../../schemas/instances.ts";
import { requireProject } from "../../auth.ts";
import { toInstance } from "../../catalog/mappers.ts";
import { instances } from "../../catalog/schema.ts";
import { findVmGroup } from "../../catalog/vm-groups.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";
import { decodePageToken, toPage } from "../../pagination.ts";

export const route = createRoute({
  method: "get",
  path: "/v1/vm-groups/{id}/instances",
  operationId: "listInstances",
  tags: ["vm-groups"],
  summary: "List a VM group's instances",
  security: bearerAuth,
  request: { params: z.object({ id: idSchema("vmGroup") }), query: PageQuerySchema },
  responses: {
    200: jsonResponse(pageOf(InstanceSchema, "InstancePage"), "A page of instances."),
    ...problemResponses(400, 401, 403, 404),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "read");
    const { id } = c.req.valid("param");
    const { page_size, page_token } = c.req.valid("query");
    const after = decodePageToken(page_token, "instance");
    const { db } = c.get("services");
    const group = await findVmGroup(db, projectId, id);
    if (!group) throw errors.notFound("VM group", id);
    const rows = await db
      .select()
      .from(instances)
      .where(and(eq(instances.vmGroupId, id), after ? gt(instances.id, after) : undefined))
      .orderBy(asc(instances.id))
      .limit(page_size + 1);
    return c.json(
      toPage(rows, page_size, (row) => toInstance(row, group.name)),
      200,
    );
  });
}
