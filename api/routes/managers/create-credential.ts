import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { eq } from "drizzle-orm";
import { CreateManagerCredentialSchema, ManagerCredentialSchema } from "../../../schemas/managers.ts";
import { hashSecret, newTokenSecret, requireScope } from "../../auth.ts";
import { assertRegionsExist } from "../../catalog/regions.ts";
import { apiTokens, datacenters } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { newId } from "../../ids.ts";
import { bearerAuth, jsonBody, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "post",
  path: "/v1/manager-credentials",
  operationId: "createManagerCredential",
  tags: ["admin"],
  summary: "Issue the credential a datacenter's regional manager registers and reports with (admin)",
  security: bearerAuth,
  request: { body: jsonBody(CreateManagerCredentialSchema) },
  responses: {
    201: jsonResponse(ManagerCredentialSchema, "The credential with its secret."),
    ...problemResponses(400, 401, 403, 409, 422),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    requireScope(c, "admin");
    const body = c.req.valid("json");
    const { db } = c.get("services");
    await assertRegionsExist(db, [{ path: "region", name: body.region }]);
    const [existing] = await db
      .select({ region: datacenters.region })
      .from(datacenters)
      .where(eq(datacenters.name, body.datacenter))
      .limit(1);
    if (existing && existing.region !== body.region) {
      throw errors.conflict(
        "datacenter_in_other_region",
        `Datacenter ${body.datacenter} belongs to region ${existing.region}.`,
      );
    }
    const secret = newTokenSecret();
    const [row] = await db
      .insert(apiTokens)
      .values({
        id: newId("token"),
        name: `manager of ${body.datacenter}`,
        secretHash: hashSecret(secret),
        scopes: ["manager"],
        region: body.region,
        datacenter: body.datacenter,
      })
      .returning();
    if (!row) throw new Error("insert returned no credential");
    return c.json(
      {
        id: row.id,
        region: body.region,
        datacenter: body.datacenter,
        secret,
        created_at: row.createdAt.toISOString(),
      },
      201,
    );
  });
}
