import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, asc, eq, isNotNull } from "drizzle-orm";
import { idSchema, NameSchema } from "../../../schemas/common.ts";
import { OperationSchema } from "../../../schemas/operations.ts";
import { requireProject } from "../../auth.ts";
import { findImage, requireImageVersion } from "../../catalog/images.ts";
import { datacenterStatus } from "../../catalog/mappers.ts";
import {
  failRunningOperation,
  findOperation,
  insertOperation,
  toOperation,
} from "../../catalog/operations.ts";
import { assertRegionsExist } from "../../catalog/regions.ts";
import { datacenters, imageReplicas } from "../../catalog/schema.ts";
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
    const { db, now, transferTokens, operationEvents } = c.get("services");
    const image = await findImage(db, projectId, id);
    if (!image) throw errors.notFound("image", id);
    const version = body.version ?? image.currentVersion;
    if (!version)
      throw errors.conflict("image_not_uploaded", `Image ${image.name} has no uploaded version yet.`);
    const known = await requireImageVersion(db, image, version, "version");
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

    await db
      .insert(imageReplicas)
      .values({ imageId: id, version, datacenter: target.name, state: "pending", bytesTotal: known.size })
      .onConflictDoNothing();
    const operation = await insertOperation(db, {
      projectId,
      kind: "replicate-image",
      target: { type: "image", id },
      input: { datacenter: target.name, version },
      state: "running",
      progress: { step: "transferring-image", bytes_done: 0, bytes_total: known.size, children: [] },
    });
    const { token } = await transferTokens.sign({
      imageId: id,
      version,
      datacenter: target.name,
      action: "replicate",
    });
    let refusal: string | undefined;
    try {
      const answer = await fetch(`${target.managerUrl}/v1/replicas/${id}/versions/${version}`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}` },
        signal: AbortSignal.timeout(15_000),
      });
      if (!answer.ok) refusal = `${target.name} refused: ${answer.status} ${await answer.text()}`;
    } catch (error) {
      refusal = `${target.name} is unreachable: ${String(error)}`;
    }
    if (refusal) {
      await failRunningOperation(
        db,
        operationEvents,
        operation.id,
        { code: "manager_unavailable", message: refusal },
        now(),
      );
    }
    // The manager's own report may already have finished the operation.
    const latest = await findOperation(db, operation.id, projectId);
    return c.json(toOperation(latest ?? operation), 202);
  });
}
