import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq, inArray, isNotNull } from "drizzle-orm";
import { idSchema } from "../../../schemas/common.ts";
import { OperationSchema } from "../../../schemas/operations.ts";
import { requireProject } from "../../auth.ts";
import { nextVersionOf } from "../../catalog/image-versions.ts";
import { describeImageUsers, findOwnImage } from "../../catalog/images.ts";
import { startOperation, toOperation } from "../../catalog/operations.ts";
import { datacenters, imageReplicas, images, operations, vmGroups } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";
import type { ImageDeletionInput } from "../../orchestrator/images/handlers.ts";

export const route = createRoute({
  method: "delete",
  path: "/v1/images/{id}",
  operationId: "deleteImage",
  tags: ["images"],
  summary:
    "Delete an image no VM group uses; its stored replicas are removed from every datacenter by the returned operation",
  security: bearerAuth,
  request: { params: z.object({ id: idSchema("image") }) },
  responses: {
    202: jsonResponse(
      OperationSchema,
      "The image is gone from the catalog; the operation removes its bytes.",
    ),
    ...problemResponses(400, 401, 403, 404, 409),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "write");
    const { id } = c.req.valid("param");
    const { db, catalog } = c.get("services");
    const operation = await db.transaction(async (tx) => {
      const image = await findOwnImage(tx, projectId, id);
      const users = await tx
        .select({ name: vmGroups.name, projectId: vmGroups.projectId })
        .from(vmGroups)
        .where(eq(vmGroups.imageId, id));
      if (users.length > 0) {
        throw errors.conflict(
          "image_in_use",
          `Image ${image.name} is used by ${describeImageUsers(users, projectId)}; delete or move them first.`,
        );
      }
      const replicas = await tx
        .select({ datacenter: imageReplicas.datacenter, version: imageReplicas.version })
        .from(imageReplicas)
        .where(eq(imageReplicas.imageId, id));
      // An upload of the next version may have reached the origin's managers: cleared too.
      const next = await nextVersionOf(tx, id);
      const uploadTargets = (
        await tx
          .select({ name: datacenters.name })
          .from(datacenters)
          .where(and(eq(datacenters.region, image.originRegion), isNotNull(datacenters.managerUrl)))
      ).map((dc) => ({ datacenter: dc.name, version: next }));
      // Replications of the image still running end as cancelled rather than fail midway.
      await tx
        .update(operations)
        .set({ cancelRequested: true })
        .where(
          and(
            eq(operations.targetId, id),
            inArray(operations.kind, ["replicate-image", "distribute-image-version"]),
            inArray(operations.state, ["pending", "running"]),
          ),
        );
      await tx.delete(images).where(and(eq(images.id, id), eq(images.projectId, projectId)));
      const input: ImageDeletionInput = { replicas, uploadTargets };
      return startOperation(
        tx,
        { catalog },
        {
          projectId,
          kind: "delete-image",
          target: { type: "image", id },
          input: { ...input },
          // Nothing stored anywhere: nothing left to do.
          state: replicas.length + uploadTargets.length === 0 ? "succeeded" : "pending",
        },
      );
    });
    return c.json(toOperation(operation), 202);
  });
}
