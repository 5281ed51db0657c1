import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq, isNotNull } from "drizzle-orm";
import { idSchema } from "../../../schemas/common.ts";
import { ReplicaSourcesSchema } from "../../../schemas/managers.ts";
import { requireManager } from "../../auth.ts";
import { datacenterStatus } from "../../catalog/datacenter-status.ts";
import { mayFetchSources, versionBusiness, versionNotFound } from "../../catalog/replicas.ts";
import { datacenters, imageReplicas, images, imageVersions } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "get",
  path: "/v1/images/{id}/versions/{version}/sources",
  operationId: "getReplicaSources",
  tags: ["managers"],
  summary: "Where a regional manager can pull an image version from, with a read token for each source",
  security: bearerAuth,
  request: { params: z.object({ id: idSchema("image"), version: z.coerce.number().int().min(1) }) },
  responses: {
    200: jsonResponse(ReplicaSourcesSchema, "The version and its sources, live ones first."),
    // 404 also when the caller's datacenter has no pull of the version to make (see mayFetchSources).
    ...problemResponses(400, 401, 403, 404),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const principal = requireManager(c);
    const { id, version } = c.req.valid("param");
    const { db, now, transferTokens } = c.get("services");
    const [row] = await db
      .select({
        digest: imageVersions.digest,
        manifestDigest: imageVersions.manifestDigest,
        size: imageVersions.size,
        format: images.format,
        projectId: images.projectId,
      })
      .from(imageVersions)
      .innerJoin(images, eq(images.id, imageVersions.imageId))
      .where(and(eq(imageVersions.imageId, id), eq(imageVersions.version, version)))
      .limit(1);
    // Another project's image looks like one that does not exist.
    const asked = principal.datacenter
      ? mayFetchSources(await versionBusiness(db, principal.datacenter.name, id, version))
      : true; // an admin
    if (!row || !asked) throw versionNotFound(id, version);
    const holders = await db
      .select({ datacenter: datacenters })
      .from(imageReplicas)
      .innerJoin(datacenters, eq(datacenters.name, imageReplicas.datacenter))
      .where(
        and(
          eq(imageReplicas.imageId, id),
          eq(imageReplicas.version, version),
          eq(imageReplicas.state, "available"),
          isNotNull(datacenters.managerUrl),
        ),
      );
    const at = now();
    const rank = { up: 0, degraded: 1, unknown: 2, down: 3 } as const;
    const candidates = holders
      .map((h) => h.datacenter)
      .filter((dc) => dc.name !== principal.datacenter?.name)
      // Same-region sources first: they are the closest.
      .sort(
        (a, b) =>
          rank[datacenterStatus(a.lastHeartbeatAt, at)] - rank[datacenterStatus(b.lastHeartbeatAt, at)] ||
          Number(b.region === principal.datacenter?.region) -
            Number(a.region === principal.datacenter?.region) ||
          a.name.localeCompare(b.name),
      );
    const sources = await Promise.all(
      candidates.map(async (dc) => ({
        datacenter: dc.name,
        region: dc.region,
        url: dc.managerUrl as string,
        token: (await transferTokens.sign({ imageId: id, version, datacenter: dc.name, action: "read" }))
          .token,
      })),
    );
    return c.json(
      {
        image_id: id,
        version,
        project_id: row.projectId,
        digest: row.digest,
        ...(row.manifestDigest ? { manifest_digest: row.manifestDigest } : {}),
        size: row.size,
        format: row.format as "raw",
        sources,
      },
      200,
    );
  });
}
