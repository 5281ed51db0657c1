import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { eq } from "drizzle-orm";
import { idSchema } from "../../../schemas/common.ts";
import { OperationSchema } from "../../../schemas/operations.ts";
import { requireProject } from "../../auth.ts";
import { listOperations, startOperation, toOperation } from "../../catalog/operations.ts";
import { vmGroups } from "../../catalog/schema.ts";
import { findVmGroup } from "../../catalog/vm-groups.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "delete",
  path: "/v1/vm-groups/{id}",
  operationId: "deleteVmGroup",
  tags: ["vm-groups"],
  summary: "Delete a VM group; the operation stops and removes its instances",
  description:
    "Asked again while the group is being deleted, it answers the deletion under way rather than starting another, so a client that timed out re-attaches to it.",
  security: bearerAuth,
  request: { params: z.object({ id: idSchema("vmGroup") }) },
  responses: {
    202: jsonResponse(OperationSchema, "Accepted; follow the operation."),
    ...problemResponses(400, 401, 403, 404, 409),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "write");
    const { id } = c.req.valid("param");
    const { db, now } = c.get("services");
    const operation = await db.transaction(async (tx) => {
      const group = await findVmGroup(tx, projectId, id);
      if (!group) throw errors.notFound("VM group", id);
      // Asked again (a client that timed out): the deletion under way is the answer.
      if (group.state === "deleting") {
        const unfinished = await listOperations(tx, projectId, undefined, 50, { targetId: id, done: false });
        const running = unfinished.find((o) => o.kind === "delete-vm-group");
        if (running) return running;
      }
      const dependents = (
        await tx
          .select({ name: vmGroups.name, metadataFrom: vmGroups.metadataFrom })
          .from(vmGroups)
          .where(eq(vmGroups.projectId, projectId))
      )
        .filter((g) => Object.values(g.metadataFrom).some((ref) => ref.vm_group === id))
        .map((g) => g.name);
      if (dependents.length > 0) {
        throw errors.conflict(
          "vm_group_referenced",
          `VM groups ${dependents.join(", ")} take metadata from ${group.name}; change or delete them first.`,
        );
      }
      await tx.update(vmGroups).set({ state: "deleting", updatedAt: now() }).where(eq(vmGroups.id, id));
      return startOperation(tx, c.get("services"), {
        projectId,
        kind: "delete-vm-group",
        target: { type: "vm-group", id },
      });
    });
    return c.json(toOperation(operation), 202);
  });
}
