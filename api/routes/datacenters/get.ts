import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { eq } from "drizzle-orm";
import { NameSchema } from "../../../schemas/common.ts";
import { DatacenterSchema } from "../../../schemas/regions.ts";
import { requireScope } from "../../auth.ts";
import { toDatacenter } from "../../catalog/mappers.ts";
import { datacenters } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "get",
  path: "/v1/datacenters/{name}",
  operationId: "getDatacenter",
  tags: ["regions"],
  summary: "Get a datacenter with its status",
  security: bearerAuth,
  request: { params: z.object({ name: NameSchema }) },
  responses: {
    200: jsonResponse(DatacenterSchema, "The datacenter."),
    ...problemResponses(400, 401, 403, 404),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    requireScope(c, "read");
    const { name } = c.req.valid("param");
    const { db, now } = c.get("services");
    const [row] = await db.select().from(datacenters).where(eq(datacenters.name, name)).limit(1);
    if (!row) throw errors.notFound("datacenter", name);
    return c.json(toDatacenter(row, now()), 200);
  });
}
