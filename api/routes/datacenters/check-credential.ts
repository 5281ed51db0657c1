import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { NameSchema } from "../../../schemas/common.ts";
import { requireManagerOf } from "../../auth.ts";
import type { AppEnv } from "../../env.ts";
import { bearerAuth, problemResponses } from "../../openapi.ts";

// A manager asks this with the credential a host agent presented: the control plane issued
// it and alone can tell whether it is one of this datacenter's (it keeps only its hash).
export const route = createRoute({
  method: "get",
  path: "/v1/datacenters/{name}/credential-check",
  operationId: "checkManagerCredential",
  tags: ["regions"],
  summary: "Whether the bearer is a manager credential of this datacenter (or an admin token)",
  security: bearerAuth,
  request: { params: z.object({ name: NameSchema }) },
  responses: {
    204: { description: "It is." },
    ...problemResponses(400, 401, 403),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, (c) => {
    requireManagerOf(c, c.req.valid("param").name);
    return c.body(null, 204);
  });
}
