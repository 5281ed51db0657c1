import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq } from "drizzle-orm";
import { idSchema } from "../../../schemas/common.ts";
import { OperationSchema } from "../../../schemas/operations.ts";
import { requireProject } from "../../auth.ts";
import { findImage } from "../../catalog/images.ts";
import { insertOperation, toOperation } from "../../catalog/operations.ts";
import { imageReplicas, images, vmGroups } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "delete",
  path: "/v1/images/{id}",
  operationId: "deleteImage",
  tags: ["images"],
  summary: "Delete an image; its stored replicas are removed by the returned operation",
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
    const { db } = c.get("services");
    const operation = await db.transaction(async (tx) => {
      const image = await findImage(tx, projectId, id);
      if (!image) throw errors.notFound("image", id);
      const users = await tx.select({ name: vmGroups.name }).from(vmGroups).where(eq(vmGroups.imageId, id));
      if (users.length > 0) {
        throw errors.conflict(
          "image_in_use",
          `Image ${image.name} is used by VM groups ${users.map((u) => u.name).join(", ")}; delete or move them first.`,
        );
      }
      const replicas = await tx
        .select({
          datacenter: imageReplicas.datacenter,
          version: imageReplicas.version,
          localId: imageReplicas.localId,
        })
        .from(imageReplicas)
        .where(eq(imageReplicas.imageId, id));
      await tx.delete(images).where(and(eq(images.id, id), eq(images.projectId, projectId)));
      return insertOperation(tx, {
        projectId,
        kind: "delete-image",
        target: { type: "image", id },
        input: { replicas },
        // Nothing stored anywhere: nothing left to do.
        state: replicas.length === 0 ? "succeeded" : "pending",
      });
    });
    return c.json(toOperation(operation), 202);
  });
}
