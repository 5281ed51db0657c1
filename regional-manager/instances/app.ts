// The manager's instance API, called by the control plane with an instance token (one
// datacenter, one instance; see common/tokens/instance-token.ts). Metadata has its own
// concern (metadata/app.ts).
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { InstanceTokenVerifier } from "../../common/tokens/instance-token.ts";
import { ManagerInstanceSpecSchema, ManagerInstanceStatusSchema } from "../../schemas/manager-instances.ts";
import { requireObjectToken } from "../http/object-token.ts";
import { instanceTokenSecurity, type Log, managerRoutes, problemResponses } from "../http/openapi.ts";
import { invalidField } from "../http/problems.ts";
import type { InstanceManager } from "./instance-manager.ts";

export const InstanceParams = z.object({
  id: z
    .string()
    .min(1)
    .openapi({ param: { name: "id", in: "path" }, example: "ins_01jd3k9x4m6q8r2t5v7w9y1z3b" }),
});

const status = (description: string) => ({
  description,
  content: { "application/json": { schema: ManagerInstanceStatusSchema } },
});
const security = instanceTokenSecurity;
const tags = ["instances"];

export const instanceRoutes = {
  put: createRoute({
    operationId: "putInstance",
    method: "put",
    path: "/v1/instances/{id}",
    tags,
    summary:
      "Create and start the instance (idempotent); when its image version is not held here it is pulled first",
    security,
    request: {
      params: InstanceParams,
      body: { required: true, content: { "application/json": { schema: ManagerInstanceSpecSchema } } },
    },
    responses: {
      200: status("Known already; its status"),
      201: status("Created and starting"),
      202: status("Created; waiting for its image version to arrive"),
      ...problemResponses(400, 401, 403, 409, 422),
    },
  }),
  get: createRoute({
    operationId: "getInstance",
    method: "get",
    path: "/v1/instances/{id}",
    tags,
    summary: "The instance's status",
    security,
    request: { params: InstanceParams },
    responses: { 200: status("Its status"), ...problemResponses(401, 403, 404) },
  }),
  stop: createRoute({
    operationId: "stopInstance",
    method: "post",
    path: "/v1/instances/{id}/stop",
    tags,
    summary: "Power the guest off; its overlay stays, and a PUT starts it again",
    security,
    request: { params: InstanceParams },
    responses: { 200: status("Stopped"), ...problemResponses(401, 403, 404) },
  }),
  delete: createRoute({
    operationId: "deleteInstance",
    method: "delete",
    path: "/v1/instances/{id}",
    tags,
    summary: "Stop the guest and remove its process, sockets, overlay and metadata",
    security,
    request: { params: InstanceParams },
    responses: { 204: { description: "Gone (or never here)" }, ...problemResponses(401, 403) },
  }),
  console: createRoute({
    operationId: "getInstanceConsole",
    method: "get",
    path: "/v1/instances/{id}/console",
    tags,
    summary: "The last bytes of the guest's serial console",
    security,
    request: {
      params: InstanceParams,
      query: z.object({
        tail_bytes: z.coerce
          .number()
          .int()
          .min(1)
          .max(1 << 20)
          .default(8192)
          .openapi({ description: "How many of the last bytes (1..1048576)" }),
      }),
    },
    responses: {
      200: {
        description: "The console's tail",
        content: { "application/json": { schema: z.object({ console: z.string() }) } },
      },
      ...problemResponses(400, 401, 403, 404),
    },
  }),
};

export function createInstanceApp(options: {
  instances: InstanceManager;
  verifier: InstanceTokenVerifier;
  log?: Log;
}): OpenAPIHono {
  const { instances } = options;
  const app = managerRoutes(options.log);
  const guard = requireObjectToken(options.verifier);
  app.use("/v1/instances/:id", guard);
  app.use("/v1/instances/:id/stop", guard);
  app.use("/v1/instances/:id/console", guard);

  app.openapi(instanceRoutes.put, async (c) => {
    const spec = c.req.valid("json");
    if (spec.instance_id !== c.req.valid("param").id) {
      throw invalidField("instance_id", "must be the instance of the path");
    }
    const { status, created } = await instances.createAndStart(spec);
    return c.json(status, created ? 201 : status.state === "transferring-image" ? 202 : 200);
  });

  app.openapi(instanceRoutes.get, (c) => c.json(instances.status(c.req.valid("param").id), 200));

  app.openapi(instanceRoutes.stop, async (c) => c.json(await instances.stop(c.req.valid("param").id), 200));

  app.openapi(instanceRoutes.delete, async (c) => {
    await instances.delete(c.req.valid("param").id);
    return c.body(null, 204);
  });

  app.openapi(instanceRoutes.console, (c) => {
    const { id } = c.req.valid("param");
    return c.json({ console: instances.consoleLog(id, c.req.valid("query").tail_bytes) }, 200);
  });

  return app;
}
