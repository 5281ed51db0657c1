import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq } from "drizzle-orm";
import { idSchema } from "../../../schemas/common.ts";
import { ImageSchema, UpdateImageSchema } from "../../../schemas/images.ts";
import { requireProject } from "../../auth.ts";
import { findImage, hydrateImages } from "../../catalog/images.ts";
import { startOperation } from "../../catalog/operations.ts";
import { assertRegionsExist } from "../../catalog/regions.ts";
import { images } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonBody, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "patch",
  path: "/v1/images/{id}",
  operationId: "updateImage",
  tags: ["images"],
  summary: "Change an image's labels or replication policy",
  security: bearerAuth,
  request: { params: z.object({ id: idSchema("image") }), body: jsonBody(UpdateImageSchema) },
  responses: {
    200: {
      ...jsonResponse(
        ImageSchema,
        "The image as updated. When the replication policy changed, the `x-operation-id` header names the operation that carries it out.",
      ),
      headers: z.object({ "x-operation-id": z.string().optional() }),
    },
    ...problemResponses(400, 401, 403, 404, 422),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "write");
    const { id } = c.req.valid("param");
    const body = c.req.valid("json");
    const { db, now, catalog } = c.get("services");
    // Another project's image is not found, whatever the body says.
    if (!(await findImage(db, projectId, id))) throw errors.notFound("image", id);
    if (body.replicate_to) {
      await assertRegionsExist(
        db,
        body.replicate_to.map((name, i) => ({ path: `replicate_to[${i}]`, name })),
      );
    }
    const row = await db.transaction(async (tx) => {
      const before = await findImage(tx, projectId, id);
      if (!before) throw errors.notFound("image", id);
      const [after] = await tx
        .update(images)
        .set({
          ...(body.labels ? { labels: body.labels } : {}),
          ...(body.replicate_to ? { replicateTo: body.replicate_to } : {}),
          updatedAt: now(),
        })
        .where(and(eq(images.id, id), eq(images.projectId, projectId)))
        .returning();
      if (!after) throw errors.notFound("image", id);
      // A changed policy is carried out by an operation: copies made in the regions added,
      // let go in the regions removed (once no VM group uses them).
      if (after.currentVersion && policyChanged(before.replicateTo, after.replicateTo)) {
        const operation = await startOperation(
          tx,
          { catalog },
          {
            projectId,
            kind: "distribute-image-version",
            target: { type: "image", id },
            input: { version: after.currentVersion, replicate_to: after.replicateTo },
          },
        );
        c.header("x-operation-id", operation.id);
      }
      return after;
    });
    const [image] = await hydrateImages(db, [row]);
    return c.json(image as NonNullable<typeof image>, 200);
  });
}

function policyChanged(before: readonly string[], after: readonly string[]): boolean {
  return before.length !== after.length || before.some((region) => !after.includes(region));
}
