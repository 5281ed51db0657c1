import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { and, asc, eq, gt, inArray } from "drizzle-orm";
import { idsQuerySchema, NameSchema, PageQuerySchema, pageOf } from "../../../schemas/common.ts";
import { MAX_LISTED_IDS } from "../../../schemas/plain.ts";
import { VmGroupSchema } from "../../../schemas/vm-groups.ts";
import { requireProject } from "../../auth.ts";
import { toVmGroup } from "../../catalog/mappers.ts";
import { vmGroups } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";
import { decodePageToken, toPage } from "../../pagination.ts";

export const route = createRoute({
  method: "get",
  path: "/v1/vm-groups",
  operationId: "listVmGroups",
  tags: ["vm-groups"],
  summary: "List the project's VM groups, optionally by name or by IDs",
  security: bearerAuth,
  request: {
    query: PageQuerySchema.extend({
      name: NameSchema.optional(),
      id: idsQuerySchema("vmGroup")
        .optional()
        .openapi({
          description: `Only these groups (at most ${MAX_LISTED_IDS}; IDs of no group of the project are left out): one request refreshes many, as Terraform does.`,
        }),
    }),
  },
  responses: {
    200: jsonResponse(pageOf(VmGroupSchema, "VmGroupPage"), "A page of VM groups."),
    ...problemResponses(400, 401, 403),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "read");
    const { page_size, page_token, name, id } = c.req.valid("query");
    const after = decodePageToken(page_token, "vmGroup");
    const rows = await c
      .get("services")
      .db.select()
      .from(vmGroups)
      .where(
        and(
          eq(vmGroups.projectId, projectId),
          name ? eq(vmGroups.name, name) : undefined,
          id ? inArray(vmGroups.id, id) : undefined,
          after ? gt(vmGroups.id, after) : undefined,
        ),
      )
      .orderBy(asc(vmGroups.id))
      .limit(page_size + 1);
    return c.json(toPage(rows, page_size, toVmGroup), 200);
  });
}
