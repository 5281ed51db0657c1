import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { eq } from "drizzle-orm";
import { DatacenterSchema, RegisterDatacenterSchema } from "../../../schemas/regions.ts";
import { requireScope } from "../../auth.ts";
import { toDatacenter } from "../../catalog/mappers.ts";
import { datacenters, regions } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonBody, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "post",
  path: "/v1/datacenters",
  operationId: "registerDatacenter",
  tags: ["regions"],
  summary: "Register a datacenter in a region (admin)",
  security: bearerAuth,
  request: { body: jsonBody(RegisterDatacenterSchema) },
  responses: {
    201: jsonResponse(DatacenterSchema, "The new datacenter."),
    ...problemResponses(400, 401, 403, 409, 422),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    requireScope(c, "admin");
    const body = c.req.valid("json");
    const { db, now } = c.get("services");
    const [region] = await db
      .select({ name: regions.name })
      .from(regions)
      .where(eq(regions.name, body.region))
      .limit(1);
    if (!region) {
      throw errors.unprocessable(
        "region_not_found",
        `Region ${body.region} does not exist; create it first.`,
        [{ path: "region", message: "unknown region" }],
      );
    }
    const [row] = await db
      .insert(datacenters)
      .values({
        name: body.name,
        region: body.region,
        managerUrl: body.manager_url ?? null,
        driver: body.driver,
        capacityVcpus: body.capacity.vcpus,
        capacityMemoryMb: body.capacity.memory_mb,
        capacityDiskBytes: body.capacity.disk_bytes,
      })
      .onConflictDoNothing()
      .returning();
    if (!row) throw errors.conflict("already_exists", `Datacenter ${body.name} already exists.`);
    return c.json(toDatacenter(row, now()), 201);
  });
}
