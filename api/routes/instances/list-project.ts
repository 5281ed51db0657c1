import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { and, asc, eq, gt, inArray } from "drizzle-orm";
import { idsQuerySchema, PageQuerySchema, pageOf } from "../../../schemas/common.ts";
import { InstanceSchema } from "../../../schemas/instances.ts";
import { MAX_LISTED_IDS } from "../../../schemas/plain.ts";
import { requireProject } from "../../auth.ts";
import { toInstance } from "../../catalog/mappers.ts";
import { instances, vmGroups } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";
import { decodePageToken, encodePageToken } from "../../pagination.ts";

export const route = createRoute({
  method: "get",
  path: "/v1/instances",
  operationId: "listProjectInstances",
  tags: ["vm-groups"],
  summary: "List the project's instances, optionally of some VM groups only",
  security: bearerAuth,
  request: {
    query: PageQuerySchema.extend({
      vm_group: idsQuerySchema("vmGroup")
        .optional()
        .openapi({
          description: `Only the instances of these groups (at most ${MAX_LISTED_IDS}): with GET /v1/vm-groups?id=…, two requests refresh many groups.`,
        }),
    }),
  },
  responses: {
    200: jsonResponse(pageOf(InstanceSchema, "InstancePage"), "A page of instances, by ID."),
    ...problemResponses(400, 401, 403),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "read");
    const { page_size, page_token, vm_group } = c.req.valid("query");
    const after = decodePageToken(page_token, "instance");
    const rows = await c
      .get("services")
      .db.select({ instance: instances, groupName: vmGroups.name })
      .from(instances)
      .innerJoin(vmGroups, eq(vmGroups.id, instances.vmGroupId))
      .where(
        and(
          eq(vmGroups.projectId, projectId),
          vm_group ? inArray(instances.vmGroupId, vm_group) : undefined,
          after ? gt(instances.id, after) : undefined,
        ),
      )
      .orderBy(asc(instances.id))
      .limit(page_size + 1);
    const page = rows.slice(0, page_size);
    const last = page.at(-1);
    return c.json(
      {
        items: page.map((row) => toInstance(row.instance, row.groupName)),
        next_page_token: rows.length > page_size && last ? encodePageToken(last.instance.id) : null,
      },
      200,
    );
  });
}
