import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import {
  ExplainPlacementSchema,
  type NoPlacementProblem,
  NoPlacementProblemSchema,
  type PlacementCandidate,
  PlacementExplanationSchema,
} from "../../../schemas/placements.ts";
import { requireProject } from "../../auth.ts";
import { findReadableImage, requireImageVersion } from "../../catalog/images.ts";
import { loadPlacementFacts } from "../../catalog/placement-facts.ts";
import { assertRegionsExist } from "../../catalog/regions.ts";
import type { AppEnv } from "../../env.ts";
import { errors, problemOf } from "../../errors.ts";
import { bearerAuth, jsonBody, jsonResponse, problemResponses } from "../../openapi.ts";
import { choosePlacement, placementRequestOf, summarizeRefusals } from "../../orchestrator/placement.ts";

export const route = createRoute({
  method: "post",
  path: "/v1/placements:explain",
  operationId: "explainPlacement",
  tags: ["placements"],
  summary: "Say where a VM group would be placed and why each datacenter was taken or refused",
  description:
    "Runs the placement decision on the catalog as it is now, without creating anything. When no datacenter can take the group the answer is a 422 `no_placement` whose `candidates` give every refusal.",
  security: bearerAuth,
  request: { body: jsonBody(ExplainPlacementSchema) },
  responses: {
    200: jsonResponse(PlacementExplanationSchema, "The decision and every candidate's outcome."),
    ...problemResponses(400, 401, 403),
    422: {
      description:
        "No datacenter can take the group (`no_placement`, with `candidates`), or the request names an unknown image, version or region.",
      content: { "application/problem+json": { schema: NoPlacementProblemSchema } },
    },
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "read");
    const body = c.req.valid("json");
    const { db, now } = c.get("services");
    const image = await findReadableImage(db, projectId, body.image);
    if (!image) {
      throw errors.unprocessable("image_not_found", `No image ${body.image} in this project.`, [
        { path: "image", message: "unknown image" },
      ]);
    }
    const versionNumber = body.image_version ?? image.currentVersion;
    if (!versionNumber) {
      throw errors.unprocessable(
        "image_not_uploaded",
        `Image ${image.name} has no uploaded version yet, so its placement cannot be weighed.`,
        [{ path: "image", message: "no uploaded version" }],
      );
    }
    const version = await requireImageVersion(
      db,
      image,
      versionNumber,
      body.image_version ? "image_version" : "image",
    );
    await assertRegionsExist(db, [
      ...(body.region ? [{ path: "region", name: body.region }] : []),
      ...(body.placement?.regions ?? []).map((name, i) => ({ path: `placement.regions[${i}]`, name })),
    ]);

    const facts = await loadPlacementFacts(db, projectId, image.id, now());
    const result = choosePlacement({
      request: placementRequestOf({ region: body.region ?? null, placement: body.placement ?? null }),
      machine: { vcpus: body.machine.vcpus, memoryMb: body.machine.memory_mb },
      size: body.size,
      datacenters: facts.datacenters,
      image: { version: version.version, size: version.size, holdings: facts.holdings },
      projectInstancesByRegion: facts.projectInstancesByRegion,
    });
    const candidates: PlacementCandidate[] = result.candidates.map((candidate) => ({
      datacenter: candidate.datacenter,
      region: candidate.region,
      outcome: candidate.outcome,
      reasons: candidate.reasons,
      transfer_bytes: candidate.transferBytes,
    }));

    if (!result.decision) {
      const field = body.region ? "region" : "placement";
      const problem: NoPlacementProblem = {
        ...problemOf(
          errors.unprocessable(
            "no_placement",
            `No datacenter can take this group: ${summarizeRefusals(result.candidates)}.`,
            [{ path: field, message: "no datacenter satisfies it" }],
          ),
          c.req.path,
        ),
        candidates,
      };
      return c.json(problem, 422, { "content-type": "application/problem+json" });
    }
    return c.json({ decision: result.decision, candidates }, 200);
  });
}
