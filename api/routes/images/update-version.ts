import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq } from "drizzle-orm";
import { idSchema } from "../../../schemas/common.ts";
import { ImageVersionDetailSchema, UpdateImageVersionSchema } from "../../../schemas/image-versions.ts";
import { requireProject } from "../../auth.ts";
import { imageVersionDetails } from "../../catalog/image-versions.ts";
import { findImage, findOwnImage } from "../../catalog/images.ts";
import { imageVersions } from "../../catalog/schema.ts";
import { versionStateAt } from "../../catalog/version-rules.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonBody, jsonResponse, problemResponses } from "../../openapi.ts";
import { settleCurrentVersion } from "../../orchestrator/images/current-version.ts";

export const route = createRoute({
  method: "patch",
  path: "/v1/images/{id}/versions/{version}",
  operationId: "updateImageVersion",
  tags: ["images"],
  summary: "Deprecate a version, make it obsolete or active again, or schedule those changes",
  description:
    "A deprecated version still boots, but groups that follow the image (or its family) skip it: when it was current, they roll to the newest active version. An obsolete version is refused for new instances; running ones keep it. `deprecate_at` and `obsolete_at` are applied by the control plane when their time comes. Setting `state` clears a scheduled time that has already passed.",
  security: bearerAuth,
  request: {
    params: z.object({ id: idSchema("image"), version: z.coerce.number().int().min(1).max(2_147_483_647) }),
    body: jsonBody(UpdateImageVersionSchema),
  },
  responses: {
    200: jsonResponse(ImageVersionDetailSchema, "The version as changed."),
    ...problemResponses(400, 401, 403, 404, 409),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "write");
    const { id, version } = c.req.valid("param");
    const body = c.req.valid("json");
    const services = c.get("services");
    const { db, now } = services;
    const image = await db.transaction(async (tx) => {
      const image = await findOwnImage(tx, projectId, id);
      const key = and(eq(imageVersions.imageId, id), eq(imageVersions.version, version));
      const [row] = await tx.select().from(imageVersions).where(key).for("update");
      if (!row) throw errors.notFound("image version", `${id} version ${version}`);
      const at = now();
      if (versionStateAt(row, at) === "deleted") {
        throw errors.conflict("version_deleted", `Version ${version} of image ${image.name} is deleted.`);
      }
      const times = {
        deprecateAt: body.deprecate_at === undefined ? row.deprecateAt : parseTime(body.deprecate_at),
        obsoleteAt: body.obsolete_at === undefined ? row.obsoleteAt : parseTime(body.obsolete_at),
      };
      // A state given by hand wins over a scheduled time already passed (which would move it on again).
      if (body.state !== undefined) {
        if (times.deprecateAt && times.deprecateAt <= at && body.deprecate_at === undefined)
          times.deprecateAt = null;
        if (times.obsoleteAt && times.obsoleteAt <= at && body.obsolete_at === undefined)
          times.obsoleteAt = null;
      }
      const next = { ...row, state: body.state ?? row.state, ...times };
      if (image.pinnedVersion === version && versionStateAt(next, at) === "obsolete") {
        throw errors.conflict(
          "version_pinned",
          `Version ${version} is image ${image.name}'s current_version, set by hand: set another current_version before making it obsolete.`,
        );
      }
      await tx
        .update(imageVersions)
        .set({ state: next.state, ...times })
        .where(key);
      await settleCurrentVersion(
        tx,
        services,
        id,
        at,
        `version ${version} of image ${image.name} is now ${versionStateAt(next, at)}`,
      );
      return findImage(tx, projectId, id);
    });
    if (!image) throw errors.notFound("image", id);
    const [detail] = await imageVersionDetails(db, image, now(), version);
    if (!detail) throw errors.notFound("image version", `${id} version ${version}`);
    return c.json(detail, 200);
  });
}

function parseTime(text: string | null): Date | null {
  return text === null ? null : new Date(text);
}
