import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, asc, eq, isNotNull } from "drizzle-orm";
import { idSchema, NameSchema } from "../../../schemas/common.ts";
import { OperationSchema } from "../../../schemas/operations.ts";
import { requireProject } from "../../auth.ts";
import { datacenterStatus } from "../../catalog/datacenter-status.ts";
import { findOwnImage, requireImageVersion } from "../../catalog/images.ts";
import { startOperation, toOperation } from "../../catalog/operations.ts";
import { assertRegionsExist } from "../../catalog/regions.ts";
import { datacenters, imageReplicas } from "../../catalog/schema.ts";
import { versionStateAt } from "../../catalog/version-rules.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonBody, jsonResponse, problemResponses } from "../../openapi.ts";

const ReplicateImageSchema = z
  .strictObject({
    region: NameSchema,
    version: z.number().int().min(1).optional().openapi({ description: "Defaults to the current version." }),
  })
  .openapi("ReplicateImage");

export const route = createRoute({
  method: "post",
  path: "/v1/images/{id}/replicas",
  operationId: "replicateImage",
  tags: ["images"],
  summary: "Have a region's datacenter hold a version of the image; only the chunks it lacks are sent",
  description:
    "A copy outside the image's `replicate_to` is not kept for ever: once no VM group has used it for the control plane's replica idle time (GLOBALVM_REPLICA_IDLE_SECONDS), it is collected. Put the region in `replicate_to` to keep it.",
  security: bearerAuth,
  request: { params: z.object({ id: idSchema("image") }), body: jsonBody(ReplicateImageSchema) },
  responses: {
    202: jsonResponse(OperationSchema, "Accepted; the operation ends when the replica is available."),
    ...problemResponses(400, 401, 403, 404, 409, 422),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "write");
    const { id } = c.req.valid("param");
    const body = c.req.valid("json");
    const { db, now, catalog } = c.get("services");
    const image = await findOwnImage(db, projectId, id);
    const version = body.version ?? image.currentVersion;
    if (!version)
      throw errors.conflict("image_not_uploaded", `Image ${image.name} has no uploaded version yet.`);
    const known = await requireImageVersion(db, image, version, "version");
    if (versionStateAt(known, now()) === "deleted")
      throw errors.conflict("version_deleted", `Version ${version} of image ${image.name} is deleted.`);
    await assertRegionsExist(db, [{ path: "region", name: body.region }]);
    const at = now();
    const target = (
      await db
        .select()
        .from(datacenters)
        .where(and(eq(datacenters.region, body.region), isNotNull(datacenters.managerUrl)))
        .orderBy(asc(datacenters.name))
    ).find((dc) => datacenterStatus(dc.lastHeartbeatAt, at) === "up");
    if (!target?.managerUrl) {
      throw errors.unprocessable(
        "no_datacenter_up",
        `No datacenter of region ${body.region} has a manager up.`,
        [{ path: "region", message: "no live datacenter" }],
      );
    }

    // Recorded first, so the manager's reports are not taken for a copy a VM group asked for.
    // A one-off copy outside the policy is collected once unused, like a VM group's.
    const policyHolds = body.region === image.originRegion || image.replicateTo.includes(body.region);
    const operation = await db.transaction(async (tx) => {
      await tx
        .insert(imageReplicas)
        .values({
          imageId: id,
          version,
          datacenter: target.name,
          state: "pending",
          onDemand: !policyHolds,
          lastUsedAt: at,
        })
        .onConflictDoNothing();
      return startOperation(
        tx,
        { catalog },
        {
          projectId,
          kind: "replicate-image",
          target: { type: "image", id },
          input: { datacenter: target.name, version },
          progress: { step: "transferring-image", bytes_done: 0, bytes_total: known.size, children: [] },
        },
      );
    });
    return c.json(toOperation(operation), 202);
  });
}
