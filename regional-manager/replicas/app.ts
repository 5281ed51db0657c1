// The control plane's requests about this datacenter's copies of image versions: hold one
// (the pull runs in the background and reports to the catalog) or let one go.
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { bearerToken } from "../../common/http/bearer.ts";
import { ProblemError } from "../../common/http/problem.ts";
import type { TransferAction, TransferTokenVerifier } from "../../common/tokens/transfer-token.ts";
import {
  ImageVersionParams,
  type Log,
  managerRoutes,
  problemResponses,
  transferTokenSecurity,
} from "../http/openapi.ts";
import type { ImageStore } from "../store/image-store.ts";
import type { ReplicaReporter } from "../transfer/reporter.ts";
import type { VersionPulls } from "./pulls.ts";

export const replicaRoutes = {
  hold: createRoute({
    operationId: "holdReplica",
    method: "post",
    path: "/v1/replicas/{imageId}/versions/{version}",
    tags: ["replicas"],
    summary: "Hold this image version here: answered at once, the pull from a peer runs in the background",
    security: transferTokenSecurity,
    request: { params: ImageVersionParams },
    responses: {
      200: {
        description: "Held already (reported to the catalog again)",
        content: {
          "application/json": {
            schema: z.object({ state: z.literal("available"), local_id: z.string().optional() }),
          },
        },
      },
      202: {
        description: "Being pulled; the outcome is reported to the catalog",
        content: { "application/json": { schema: z.object({ state: z.literal("transferring") }) } },
      },
      ...problemResponses(400, 401, 403),
    },
  }),
  drop: createRoute({
    operationId: "dropReplica",
    method: "delete",
    path: "/v1/replicas/{imageId}/versions/{version}",
    tags: ["replicas"],
    summary:
      "Let this copy go (an unused replica collected, a region left the policy, the image deleted); refused while an instance here boots from it",
    security: transferTokenSecurity,
    request: {
      params: ImageVersionParams,
      query: z.object({
        pulls: z.enum(["refuse", "abort"]).default("refuse").openapi({
          description: "A pull of the version in flight: refuse the drop (409), or abort the pull",
        }),
      }),
    },
    responses: {
      200: {
        description: "Dropped, or not held here",
        content: {
          "application/json": {
            schema: z.object({
              dropped: z.boolean(),
              chunks_removed: z.number().int(),
              bytes_reclaimed: z.number().int(),
            }),
          },
        },
      },
      ...problemResponses(400, 401, 403, 409),
    },
  }),
};

export function createReplicaApp(options: {
  store: ImageStore;
  verifier: TransferTokenVerifier;
  reporter: ReplicaReporter;
  pulls: VersionPulls;
  /** Instances here (in any state: a stopped one's overlay still reads it) backed by this image file. */
  instancesBootingFrom: (imagePath: string) => string[];
  log: Log;
}): OpenAPIHono {
  const { store, pulls, reporter, log } = options;
  const app = managerRoutes(log);
  const authorize = (c: Context, imageId: string, version: number, action: TransferAction) =>
    options.verifier.verify(bearerToken(c.req.header("authorization")), { imageId, version, action });

  app.openapi(replicaRoutes.hold, async (c) => {
    const { imageId, version } = c.req.valid("param");
    await authorize(c, imageId, version, "replicate");
    const held = store.getVersion(imageId, version);
    if (held?.state === "available") {
      await reporter.reportReplica({
        imageId,
        version,
        state: "available",
        localId: held.localId,
        digest: held.digest,
        size: held.size,
      });
      return c.json(
        { state: "available" as const, ...(held.localId ? { local_id: held.localId } : {}) },
        200,
      );
    }
    void pulls
      .ensure(imageId, version)
      .catch((error: unknown) => log(`[WARN] pull of ${imageId}@${version} failed: ${error}`));
    return c.json({ state: "transferring" as const }, 202);
  });

  app.openapi(replicaRoutes.drop, async (c) => {
    const { imageId, version } = c.req.valid("param");
    const { pulls: pullPolicy } = c.req.valid("query");
    await authorize(c, imageId, version, "drop");
    const held = store.getVersion(imageId, version);
    const users = held?.localId ? options.instancesBootingFrom(store.imagePath(held.localId)) : [];
    if (users.length > 0) {
      throw new ProblemError(
        409,
        "version_in_use",
        `instances ${users.join(", ")} boot from ${imageId} version ${version}`,
      );
    }
    if (pulls.isPulling(imageId, version)) {
      if (pullPolicy === "refuse") {
        throw new ProblemError(409, "version_in_use", `${imageId} version ${version} is being pulled`);
      }
      await pulls.abort(imageId, version, new Error(`${imageId} version ${version} was dropped`));
    }
    if (!store.getVersion(imageId, version)) {
      return c.json({ dropped: false, chunks_removed: 0, bytes_reclaimed: 0 }, 200);
    }
    await store.deleteVersion(imageId, version);
    const freed = await store.collectGarbage();
    log(
      `dropped ${imageId}@${version}: its image file, and ${freed.chunksRemoved} chunks (${freed.bytesReclaimed} bytes) from packs`,
    );
    return c.json(
      { dropped: true, chunks_removed: freed.chunksRemoved, bytes_reclaimed: freed.bytesReclaimed },
      200,
    );
  });

  return app;
}
