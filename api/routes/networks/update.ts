import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq } from "drizzle-orm";
import { idSchema } from "../../../schemas/common.ts";
import { NetworkSchema, UpdateNetworkSchema } from "../../../schemas/networks.ts";
import { requireProject } from "../../auth.ts";
import { toNetwork } from "../../catalog/mappers.ts";
import { findNetwork } from "../../catalog/networks.ts";
import { networks } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonBody, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "patch",
  path: "/v1/networks/{id}",
  operationId: "updateNetwork",
  tags: ["networks"],
  summary: "Rename a network or change its labels",
  security: bearerAuth,
  request: { params: z.object({ id: idSchema("network") }), body: jsonBody(UpdateNetworkSchema) },
  responses: {
    200: jsonResponse(NetworkSchema, "The network as updated."),
    ...problemResponses(400, 401, 403, 404, 409),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "write");
    const { id } = c.req.valid("param");
    const body = c.req.valid("json");
    const { db, now } = c.get("services");
    // Another project's network is not found, whatever the body says.
    if (!(await findNetwork(db, projectId, id))) throw errors.notFound("network", id);
    if (body.name !== undefined) {
      const [clash] = await db
        .select({ id: networks.id })
        .from(networks)
        .where(and(eq(networks.projectId, projectId), eq(networks.name, body.name)))
        .limit(1);
      if (clash && clash.id !== id) {
        throw errors.conflict("already_exists", `A network named ${body.name} already exists.`);
      }
    }
    const [row] = await db
      .update(networks)
      .set({
        ...(body.name !== undefined ? { name: body.name } : {}),
        ...(body.labels ? { labels: body.labels } : {}),
        updatedAt: now(),
      })
      .where(and(eq(networks.id, id), eq(networks.projectId, projectId)))
      .returning();
    if (!row) throw errors.notFound("network", id);
    return c.json(toNetwork(row), 200);
  });
}
