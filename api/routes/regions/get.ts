import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { asc, eq } from "drizzle-orm";
import { NameSchema } from "../../../schemas/common.ts";
import { RegionSchema } from "../../../schemas/regions.ts";
import { requireScope } from "../../auth.ts";
import { toRegion } from "../../catalog/mappers.ts";
import { datacenters, regions } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "get",
  path: "/v1/regions/{name}",
  operationId: "getRegion",
  tags: ["regions"],
  summary: "Get a region",
  security: bearerAuth,
  request: { params: z.object({ name: NameSchema }) },
  responses: { 200: jsonResponse(RegionSchema, "The region."), ...problemResponses(400, 401, 403, 404) },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    requireScope(c, "read");
    const { name } = c.req.valid("param");
    const { db } = c.get("services");
    const [row] = await db.select().from(regions).where(eq(regions.name, name)).limit(1);
    if (!row) throw errors.notFound("region", name);
    const dcs = await db
      .select({ name: datacenters.name })
      .from(datacenters)
      .where(eq(datacenters.region, name))
      .orderBy(asc(datacenters.name));
    return c.json(
      toRegion(
        row,
        dcs.map((d) => d.name),
      ),
      200,
    );
  });
}
