// The control plane's side of an instance's metadata: it replaces the values the guest reads
// (and long-polls) at the metadata address. The guest's side is metadata/service.ts.
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { InstanceTokenVerifier } from "../../common/tokens/instance-token.ts";
import {
  ManagerInstanceMetadataSchema,
  ManagerInstanceStatusSchema,
} from "../../schemas/manager-instances.ts";
import { requireObjectToken } from "../http/object-token.ts";
import { instanceTokenSecurity, type Log, managerRoutes, problemResponses } from "../http/openapi.ts";
import { InstanceParams } from "../instances/app.ts";
import type { InstanceManager } from "../instances/instance-manager.ts";

export const metadataRoutes = {
  put: createRoute({
    operationId: "putInstanceMetadata",
    method: "put",
    path: "/v1/instances/{id}/metadata",
    tags: ["metadata"],
    summary: "Replace the metadata the instance's guest reads; waiting readers see the change at once",
    security: instanceTokenSecurity,
    request: {
      params: InstanceParams,
      body: { required: true, content: { "application/json": { schema: ManagerInstanceMetadataSchema } } },
    },
    responses: {
      200: {
        description: "The instance's status",
        content: { "application/json": { schema: ManagerInstanceStatusSchema } },
      },
      ...problemResponses(400, 401, 403, 404),
    },
  }),
};

export function createMetadataApp(options: {
  instances: InstanceManager;
  verifier: InstanceTokenVerifier;
  log?: Log;
}): OpenAPIHono {
  const app = managerRoutes(options.log);
  app.use("/v1/instances/:id/metadata", requireObjectToken(options.verifier));
  app.openapi(metadataRoutes.put, async (c) => {
    const { metadata } = c.req.valid("json");
    return c.json(await options.instances.setMetadata(c.req.valid("param").id, metadata), 200);
  });
  return app;
}
