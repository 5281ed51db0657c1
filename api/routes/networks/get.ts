import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { idSchema } from "../../../schemas/common.ts";
import { NetworkSchema } from "../../../schemas/networks.ts";
import { requireProject } from "../../auth.ts";
import { toNetwork } from "../../catalog/mappers.ts";
import { findNetwork } from "../../catalog/networks.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "get",
  path: "/v1/networks/{id}",
  operationId: "getNetwork",
  tags: ["networks"],
  summary: "Get a network",
  security: bearerAuth,
  request: { params: z.object({ id: idSchema("network") }) },
  responses: { 200: jsonResponse(NetworkSchema, "The network."), ...problemResponses(400, 401, 403, 404) },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "read");
    const { id } = c.req.valid("param");
    const row = await findNetwork(c.get("services").db, projectId, id);
    if (!row) throw errors.notFound("network", id);
    return c.json(toNetwork(row), 200);
  });
}
