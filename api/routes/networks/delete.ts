import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, asc, eq } from "drizzle-orm";
import { idSchema } from "../../../schemas/common.ts";
import { requireProject } from "../../auth.ts";
import { networks, vmGroups } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "delete",
  path: "/v1/networks/{id}",
  operationId: "deleteNetwork",
  tags: ["networks"],
  summary: "Delete a network (refused while VM groups use it)",
  security: bearerAuth,
  request: { params: z.object({ id: idSchema("network") }) },
  responses: { 204: { description: "Deleted." }, ...problemResponses(400, 401, 403, 404, 409) },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "write");
    const { id } = c.req.valid("param");
    const { db } = c.get("services");
    const deleted = await db.transaction(async (tx) => {
      const [network] = await tx
        .select({ id: networks.id, name: networks.name })
        .from(networks)
        .where(and(eq(networks.id, id), eq(networks.projectId, projectId)))
        .for("update");
      if (!network) throw errors.notFound("network", id);
      const groups = await tx
        .select({ name: vmGroups.name })
        .from(vmGroups)
        .where(eq(vmGroups.networkId, id))
        .orderBy(asc(vmGroups.name));
      if (groups.length > 0) {
        const names = groups.map((g) => g.name);
        throw errors.conflict(
          "network_in_use",
          `Network ${network.name} has VM groups: ${names.join(", ")}. Delete them, or move them by replacing them on another network, first.`,
        );
      }
      return tx.delete(networks).where(eq(networks.id, id)).returning({ id: networks.id });
    });
    if (deleted.length === 0) throw errors.notFound("network", id);
    return c.body(null, 204);
  });
}
