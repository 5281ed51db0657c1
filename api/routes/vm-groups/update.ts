import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { eq } from "drizzle-orm";
import { idSchema } from "../../../schemas/common.ts";
import { OperationSchema } from "../../../schemas/operations.ts";
import { UpdateVmGroupSchema } from "../../../schemas/vm-groups.ts";
import { requireProject } from "../../auth.ts";
import { assertBootable, requireImageVersion } from "../../catalog/images.ts";
import { startOperation, toOperation } from "../../catalog/operations.ts";
import { assertWithinQuotas } from "../../catalog/quotas.ts";
import { vmGroups } from "../../catalog/schema.ts";
import { assertExposeUnchanged, assertValidReferences, findVmGroup } from "../../catalog/vm-groups.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonBody, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "patch",
  path: "/v1/vm-groups/{id}",
  operationId: "updateVmGroup",
  tags: ["vm-groups"],
  summary:
    "Change a VM group in place (size, machine, metadata, image version, spread_hosts); the operation rolls it out",
  security: bearerAuth,
  request: { params: z.object({ id: idSchema("vmGroup") }), body: jsonBody(UpdateVmGroupSchema) },
  responses: {
    202: jsonResponse(OperationSchema, "Accepted; follow the operation."),
    ...problemResponses(400, 401, 403, 404, 409, 422),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "write");
    const { id } = c.req.valid("param");
    const body = c.req.valid("json");
    const { db, now } = c.get("services");
    const group = await findVmGroup(db, projectId, id);
    if (!group) throw errors.notFound("VM group", id);
    if (group.state === "deleting")
      throw errors.conflict("vm_group_deleting", `VM group ${group.name} is being deleted.`);
    if (body.expose) assertExposeUnchanged(group.expose, body.expose);
    if (body.image_version && group.imageFamily) {
      throw errors.unprocessable(
        "follows_family",
        `VM group ${group.name} follows family ${group.imageFamily}: it runs its image's current version and cannot pin one.`,
        [{ path: "image_version", message: "the group follows a family" }],
      );
    }
    // A version pinned now boots every instance; one pinned before boots those a growth adds.
    const grows = body.size !== undefined && body.size > group.size;
    const booted = body.image_version ?? (grows ? group.imageVersion : null);
    if (booted) {
      const image = { id: group.imageId, name: group.imageId };
      assertBootable(image, await requireImageVersion(db, image, booted, "image_version"), now());
    }
    if (body.metadata !== undefined || body.metadata_from !== undefined) {
      await assertValidReferences(
        db,
        projectId,
        body.metadata ?? group.metadata,
        body.metadata_from ?? group.metadataFrom,
        id,
      );
    }
    const operation = await db.transaction(async (tx) => {
      // Only growth is checked: a group may shrink under a quota lowered below its use.
      await assertWithinQuotas(tx, projectId, async () => {
        const [current] = await tx.select().from(vmGroups).where(eq(vmGroups.id, id));
        if (!current) throw errors.notFound("VM group", id);
        const size = body.size ?? current.size;
        return {
          instances: size - current.size,
          vcpus: size * (body.machine?.vcpus ?? current.vcpus) - current.size * current.vcpus,
        };
      });
      await tx
        .update(vmGroups)
        .set({
          ...(body.image_version !== undefined ? { imageVersion: body.image_version } : {}),
          ...(body.size !== undefined ? { size: body.size } : {}),
          ...(body.machine ? { vcpus: body.machine.vcpus, memoryMb: body.machine.memory_mb } : {}),
          ...(body.metadata ? { metadata: body.metadata } : {}),
          ...(body.metadata_from ? { metadataFrom: body.metadata_from } : {}),
          ...(body.labels ? { labels: body.labels } : {}),
          ...(body.spread_hosts !== undefined ? { spreadHosts: body.spread_hosts } : {}),
          state: "updating",
          updatedAt: now(),
        })
        .where(eq(vmGroups.id, id));
      return startOperation(tx, c.get("services"), {
        projectId,
        kind: "update-vm-group",
        target: { type: "vm-group", id },
        input: { changes: body },
      });
    });
    return c.json(toOperation(operation), 202);
  });
}
