import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { OperationSchema } from "../../../schemas/operations.ts";
import type { CreateVmGroup } from "../../../schemas/vm-groups.ts";
import { CreateVmGroupSchema } from "../../../schemas/vm-groups.ts";
import { requireProject } from "../../auth.ts";
import type { CatalogDb } from "../../catalog/db.ts";
import { resolveFamily } from "../../catalog/image-versions.ts";
import { assertBootable, findReadableImage, requireImageVersion } from "../../catalog/images.ts";
import { findNetworkByReference } from "../../catalog/networks.ts";
import { startOperation, toOperation } from "../../catalog/operations.ts";
import { assertWithinQuotas } from "../../catalog/quotas.ts";
import { assertRegionsExist } from "../../catalog/regions.ts";
import { vmGroups } from "../../catalog/schema.ts";
import { assertValidReferences } from "../../catalog/vm-groups.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { withIdempotency } from "../../idempotency.ts";
import { newId } from "../../ids.ts";
import { bearerAuth, jsonBody, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "post",
  path: "/v1/vm-groups",
  operationId: "createVmGroup",
  tags: ["vm-groups"],
  summary: "Declare a VM group; the returned operation places it and starts its instances",
  description:
    "Accepts an `Idempotency-Key` header: a retry with the same key and body returns the first operation, so a client that timed out re-attaches instead of starting another.",
  security: bearerAuth,
  request: { body: jsonBody(CreateVmGroupSchema) },
  responses: {
    202: jsonResponse(OperationSchema, "Accepted; follow the operation."),
    ...problemResponses(400, 401, 403, 409, 413, 422),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "write");
    const body = c.req.valid("json");
    const { db, now } = c.get("services");
    const response = await withIdempotency(c, body, async () => {
      const image = await imageOf(db, projectId, body, now());
      if (body.image_version) {
        const version = await requireImageVersion(db, image, body.image_version, "image_version");
        assertBootable(image, version, now());
      }
      const network = await findNetworkByReference(db, projectId, body.network);
      if (!network) {
        throw errors.unprocessable("network_not_found", `No network ${body.network} in this project.`, [
          { path: "network", message: "unknown network" },
        ]);
      }
      await assertRegionsExist(db, [
        ...(body.region ? [{ path: "region", name: body.region }] : []),
        ...(body.placement?.regions ?? []).map((name, i) => ({ path: `placement.regions[${i}]`, name })),
      ]);
      await assertValidReferences(db, projectId, body.metadata, body.metadata_from);

      const operation = await db.transaction(async (tx) => {
        await assertWithinQuotas(tx, projectId, {
          instances: body.size,
          vcpus: body.size * body.machine.vcpus,
        });
        const [group] = await tx
          .insert(vmGroups)
          .values({
            id: newId("vmGroup"),
            projectId,
            name: body.name,
            imageId: image.id,
            imageFamily: body.image_family ?? null,
            imageVersion: body.image_version ?? null,
            networkId: network.id,
            region: body.region ?? null,
            placement: body.placement ?? null,
            size: body.size,
            vcpus: body.machine.vcpus,
            memoryMb: body.machine.memory_mb,
            metadata: body.metadata,
            metadataFrom: body.metadata_from,
            labels: body.labels,
            expose: body.expose,
            spreadHosts: body.spread_hosts,
            distribution: body.distribution ?? null,
          })
          .onConflictDoNothing()
          .returning({ id: vmGroups.id });
        if (!group)
          throw errors.conflict(
            "already_exists",
            `A VM group named ${body.name} already exists in this project.`,
          );
        return startOperation(tx, c.get("services"), {
          projectId,
          kind: "create-vm-group",
          target: { type: "vm-group", id: group.id },
        });
      });
      return { status: 202 as const, body: toOperation(operation) };
    });
    return c.json(response.body as ReturnType<typeof toOperation>, 202);
  });
}

/** The image the group boots: the one it names (its project's, or one shared with it), or its family's now. */
async function imageOf(db: CatalogDb, projectId: string, body: CreateVmGroup, now: Date) {
  if (body.image_family !== undefined) {
    const id = await resolveFamily(db, projectId, body.image_family, now);
    const image = id ? await findReadableImage(db, projectId, id) : undefined;
    if (!image) {
      throw errors.unprocessable(
        "image_family_not_found",
        `No image of family ${body.image_family} in this project has a version that may boot.`,
        [{ path: "image_family", message: "unknown family" }],
      );
    }
    return image;
  }
  const image = body.image ? await findReadableImage(db, projectId, body.image) : undefined;
  if (!image) {
    throw errors.unprocessable("image_not_found", `No image ${body.image} in this project.`, [
      { path: "image", message: "unknown image" },
    ]);
  }
  return image;
}
