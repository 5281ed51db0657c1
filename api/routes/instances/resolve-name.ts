import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { idSchema, NameSchema } from "../../../schemas/common.ts";
import { InternalNameAnswerSchema } from "../../../schemas/internal-names.ts";
import { requireManagerOf } from "../../auth.ts";
import { resolveInternalName } from "../../catalog/internal-names.ts";
import type { AppEnv } from "../../env.ts";
import { ApiError } from "../../errors.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "get",
  path: "/v1/datacenters/{name}/instances/{instance_id}/names/{fqdn}",
  operationId: "resolveInternalName",
  tags: ["managers"],
  summary: "A regional manager resolves an internal name for one of its instances' guests",
  description:
    "`INSTANCE.GROUP.REGION.PROJECT.globalvm.internal` is the instance's address on its network; `GROUP.REGION.PROJECT.globalvm.internal` the addresses of the group's ready instances in that region. Names are looked up in the asking instance's project only (case-insensitive, a trailing dot allowed). Only the manager of the datacenter the instance is placed in may ask; an instance of another datacenter, and a name that does not exist in the instance's project, are a 404 (`name_not_found`).",
  security: bearerAuth,
  request: {
    params: z.object({
      name: NameSchema,
      instance_id: idSchema("instance"),
      fqdn: z.string().min(1).max(253).openapi({ example: "web-0.web.us-east.acme.globalvm.internal" }),
    }),
  },
  responses: {
    200: jsonResponse(InternalNameAnswerSchema, "The name's addresses."),
    ...problemResponses(400, 401, 403, 404),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const { name, instance_id, fqdn } = c.req.valid("param");
    requireManagerOf(c, name);
    const answer = await resolveInternalName(c.get("services").db, name, instance_id, fqdn);
    // One answer for every miss: an unknown asker, a name that does not exist, another project's name.
    if (!answer) {
      throw new ApiError(
        404,
        "name_not_found",
        `No name ${fqdn} for instance ${instance_id} of datacenter ${name}.`,
      );
    }
    return c.json(answer, 200);
  });
}
