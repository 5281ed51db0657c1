import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { eq } from "drizzle-orm";
import { NameSchema } from "../../../schemas/common.ts";
import { ManagerRegistrationSchema } from "../../../schemas/managers.ts";
import { DatacenterSchema } from "../../../schemas/regions.ts";
import { requireManagerOf } from "../../auth.ts";
import { markForgottenInstancesUnknown } from "../../catalog/datacenter-health.ts";
import { toDatacenter } from "../../catalog/mappers.ts";
import { assertRegionsExist } from "../../catalog/regions.ts";
import { datacenters } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonBody, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "put",
  path: "/v1/datacenters/{name}",
  operationId: "registerManager",
  tags: ["regions"],
  summary: "A regional manager registers (or re-registers) its datacenter: URL, driver, capacity",
  security: bearerAuth,
  request: { params: z.object({ name: NameSchema }), body: jsonBody(ManagerRegistrationSchema) },
  responses: {
    200: jsonResponse(DatacenterSchema, "The datacenter as registered."),
    ...problemResponses(400, 401, 403, 409, 422),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const { name } = c.req.valid("param");
    const principal = requireManagerOf(c, name);
    const body = c.req.valid("json");
    if (principal.datacenter && principal.datacenter.region !== body.region) {
      throw errors.validation([
        { path: "region", message: `this credential is for region ${principal.datacenter.region}` },
      ]);
    }
    const { db, now } = c.get("services");
    await assertRegionsExist(db, [{ path: "region", name: body.region }]);
    const at = now();
    const fields = {
      region: body.region,
      managerUrl: body.manager_url,
      driver: body.driver,
      capacityVcpus: body.capacity.vcpus,
      capacityMemoryMb: body.capacity.memory_mb,
      capacityDiskBytes: body.capacity.disk_bytes,
      lastHeartbeatAt: at,
    };
    const [existing] = await db
      .select({ region: datacenters.region })
      .from(datacenters)
      .where(eq(datacenters.name, name))
      .limit(1);
    if (existing && existing.region !== body.region) {
      throw errors.conflict(
        "datacenter_in_other_region",
        `Datacenter ${name} belongs to region ${existing.region}.`,
      );
    }
    const [row] = await db
      .insert(datacenters)
      .values({ name, ...fields })
      .onConflictDoUpdate({ target: datacenters.name, set: fields })
      .returning();
    if (!row) throw new Error("upsert returned no datacenter");
    await markForgottenInstancesUnknown(db, name, at);
    return c.json(toDatacenter(row, at), 200);
  });
}
