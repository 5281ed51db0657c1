import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { CreateRegionSchema, RegionSchema } from "../../../schemas/regions.ts";
import { requireScope } from "../../auth.ts";
import { toRegion } from "../../catalog/mappers.ts";
import { regions } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonBody, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "post",
  path: "/v1/regions",
  operationId: "createRegion",
  tags: ["regions"],
  summary: "Register a region (admin)",
  security: bearerAuth,
  request: { body: jsonBody(CreateRegionSchema) },
  responses: { 201: jsonResponse(RegionSchema, "The new region."), ...problemResponses(400, 401, 403, 409) },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    requireScope(c, "admin");
    const body = c.req.valid("json");
    const [row] = await c
      .get("services")
      .db.insert(regions)
      .values({ name: body.name, displayName: body.display_name ?? body.name })
      .onConflictDoNothing()
      .returning();
    if (!row) throw errors.conflict("already_exists", `Region ${body.name} already exists.`);
    return c.json(toRegion(row, []), 201);
  });
}
