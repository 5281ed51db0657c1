import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { idSchema, NameSchema } from "../../../schemas/common.ts";
import { ReplicaReportSchema } from "../../../schemas/managers.ts";
import { requireManagerOf } from "../../auth.ts";
import type { AppEnv } from "../../env.ts";
import { bearerAuth, jsonBody, problemResponses } from "../../openapi.ts";
import { recordReplicaReport } from "../../orchestrator/replica-reports.ts";

export const route = createRoute({
  method: "put",
  path: "/v1/datacenters/{name}/replicas/{image_id}/versions/{version}",
  operationId: "reportReplica",
  tags: ["managers"],
  summary:
    "A regional manager reports its copy of an image version (progress, available with local ID, failed)",
  security: bearerAuth,
  request: {
    params: z.object({
      name: NameSchema,
      image_id: idSchema("image"),
      version: z.coerce.number().int().min(1),
    }),
    body: jsonBody(ReplicaReportSchema),
  },
  responses: { 204: { description: "Recorded." }, ...problemResponses(400, 401, 403, 404, 409) },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const { name, image_id, version } = c.req.valid("param");
    requireManagerOf(c, name);
    const services = c.get("services");
    const { db, now, operationEvents } = services;
    await recordReplicaReport(
      db,
      operationEvents,
      services,
      name,
      image_id,
      version,
      c.req.valid("json"),
      now(),
    );
    return c.body(null, 204);
  });
}
