import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq } from "drizzle-orm";
import { idSchema } from "../../../schemas/common.ts";
import { ImageSchema, UpdateImageSchema } from "../../../schemas/images.ts";
import { requireProject } from "../../auth.ts";
import {
  assertBootable,
  assertMembers,
  findOwnImage,
  hydrateImages,
  requireImageVersion,
} from "../../catalog/images.ts";
import { startOperation } from "../../catalog/operations.ts";
import { assertRegionsExist } from "../../catalog/regions.ts";
import { images } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonBody, jsonResponse, problemResponses } from "../../openapi.ts";
import { settleCurrentVersion, settleFamily } from "../../orchestrator/images/current-version.ts";

export const route = createRoute({
  method: "patch",
  path: "/v1/images/{id}",
  operationId: "updateImage",
  tags: ["images"],
  summary: "Change an image's labels, replication policy, current version (a rollback), family or members",
  description:
    "Setting `current_version` to an older version rolls every VM group that follows the image back to it, one instance at a time, as a roll forward does; groups pinned to a version stay where they are. A member project may read the image but not change it (403).",
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
    ...problemResponses(400, 401, 403, 404, 409, 422),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "write");
    const { id } = c.req.valid("param");
    const body = c.req.valid("json");
    const services = c.get("services");
    const { db, now, catalog } = services;
    // Another project's image is not found, whatever the body says.
    const found = await findOwnImage(db, projectId, id);
    if (body.replicate_to) {
      await assertRegionsExist(
        db,
        body.replicate_to.map((name, i) => ({ path: `replicate_to[${i}]`, name })),
      );
    }
    if (body.members) await assertMembers(db, projectId, body.members);
    if (typeof body.current_version === "number") {
      const version = await requireImageVersion(db, found, body.current_version, "current_version");
      assertBootable(found, version, now());
    }
    const row = await db.transaction(async (tx) => {
      const before = await findOwnImage(tx, projectId, id);
      const at = now();
      const [changed] = await tx
        .update(images)
        .set({
          ...(body.labels ? { labels: body.labels } : {}),
          ...(body.replicate_to ? { replicateTo: body.replicate_to } : {}),
          ...(body.current_version !== undefined ? { pinnedVersion: body.current_version } : {}),
          ...(body.family !== undefined ? { family: body.family } : {}),
          ...(body.members ? { members: body.members } : {}),
          updatedAt: at,
        })
        .where(and(eq(images.id, id), eq(images.projectId, projectId)))
        .returning();
      if (!changed) throw errors.notFound("image", id);
      // A rollback, or back to the newest active version: followers roll to it.
      const settled = await settleCurrentVersion(
        tx,
        services,
        id,
        at,
        body.current_version === undefined
          ? `image ${before.name} changed`
          : `image ${before.name}'s current_version was set to ${body.current_version ?? "the newest active"}`,
      );
      // The family the image left may now name another image.
      if (before.family && before.family !== changed.family)
        await settleFamily(tx, services, projectId, before.family, at);
      const after = (await findOwnImage(tx, projectId, id)) ?? changed;
      // A changed policy is carried out by an operation: copies made in the regions added,
      // let go in the regions removed (once no VM group uses them). A moved current version
      // already started its own.
      if (
        after.currentVersion &&
        settled.before === settled.after &&
        policyChanged(before.replicateTo, after.replicateTo)
      ) {
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
    const [image] = await hydrateImages(db, [row], projectId);
    return c.json(image as NonNullable<typeof image>, 200);
  });
}

function policyChanged(before: readonly string[], after: readonly string[]): boolean {
  return before.length !== after.length || before.some((region) => !after.includes(region));
}
