import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq, or } from "drizzle-orm";
import { idSchema } from "../../../schemas/common.ts";
import { OperationSchema } from "../../../schemas/operations.ts";
import { requireProject } from "../../auth.ts";
import { describeImageUsers, findOwnImage } from "../../catalog/images.ts";
import { startOperation, toOperation } from "../../catalog/operations.ts";
import { imageVersions, instances, vmGroups } from "../../catalog/schema.ts";
import { versionStateAt } from "../../catalog/version-rules.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";
import { settleCurrentVersion } from "../../orchestrator/images/current-version.ts";

export const route = createRoute({
  method: "delete",
  path: "/v1/images/{id}/versions/{version}",
  operationId: "deleteImageVersion",
  tags: ["images"],
  summary: "Delete one version of an image: refused while an instance runs it or a group pins it",
  description:
    "The version stays listed as `deleted` (its digest and size remain for the record) and never boots again; the returned operation removes its bytes from every datacenter. Refused with 409 while an instance runs it, a VM group pins it, it is the image's `current_version` set by hand, or it is the image's last version (delete the image instead).",
  security: bearerAuth,
  request: {
    params: z.object({ id: idSchema("image"), version: z.coerce.number().int().min(1).max(2_147_483_647) }),
  },
  responses: {
    202: jsonResponse(OperationSchema, "The version is deleted; the operation removes its bytes."),
    ...problemResponses(400, 401, 403, 404, 409),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "write");
    const { id, version } = c.req.valid("param");
    const services = c.get("services");
    const { db, now } = services;
    const operation = await db.transaction(async (tx) => {
      const image = await findOwnImage(tx, projectId, id);
      const versions = await tx
        .select()
        .from(imageVersions)
        .where(eq(imageVersions.imageId, id))
        .for("update");
      const row = versions.find((v) => v.version === version);
      if (!row) throw errors.notFound("image version", `${id} version ${version}`);
      const at = now();
      if (versionStateAt(row, at) === "deleted") {
        throw errors.conflict(
          "version_deleted",
          `Version ${version} of image ${image.name} is already deleted.`,
        );
      }
      if (image.pinnedVersion === version) {
        throw errors.conflict(
          "version_pinned",
          `Version ${version} is image ${image.name}'s current_version, set by hand: set another one first.`,
        );
      }
      if (versions.every((v) => v.version === version || versionStateAt(v, at) === "deleted")) {
        throw errors.conflict(
          "last_version",
          `Version ${version} is the last version of image ${image.name}: delete the image instead.`,
        );
      }
      const users = await tx
        .selectDistinct({ name: vmGroups.name, projectId: vmGroups.projectId })
        .from(vmGroups)
        .leftJoin(instances, eq(instances.vmGroupId, vmGroups.id))
        .where(
          and(
            eq(vmGroups.imageId, id),
            or(eq(vmGroups.imageVersion, version), eq(instances.imageVersion, version)),
          ),
        );
      if (users.length > 0) {
        throw errors.conflict(
          "version_in_use",
          `Version ${version} of image ${image.name} is run or pinned by ${describeImageUsers(users, projectId)}; move them to another version first.`,
        );
      }
      await tx
        .update(imageVersions)
        .set({ state: "deleted" })
        .where(and(eq(imageVersions.imageId, id), eq(imageVersions.version, version)));
      await settleCurrentVersion(
        tx,
        services,
        id,
        at,
        `version ${version} of image ${image.name} was deleted`,
      );
      return startOperation(tx, services, {
        projectId,
        kind: "delete-image-version",
        target: { type: "image", id },
        input: { version },
      });
    });
    return c.json(toOperation(operation), 202);
  });
}
