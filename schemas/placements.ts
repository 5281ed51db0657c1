import { z } from "@hono/zod-openapi";
import { NameSchema, ProblemSchema } from "./common.ts";
import { CreateVmGroupSchema } from "./vm-groups.ts";

export const CANDIDATE_OUTCOMES = ["chosen", "eligible", "refused"] as const;

const groupFields = CreateVmGroupSchema.shape;

/** The placement-relevant part of a VM group declaration, with the same shapes. */
export const ExplainPlacementSchema = z
  .strictObject({
    image: groupFields.image.unwrap(),
    image_version: groupFields.image_version,
    region: groupFields.region,
    placement: groupFields.placement,
    size: groupFields.size,
    machine: groupFields.machine,
  })
  .superRefine((body, ctx) => {
    const hasRegion = body.region !== undefined;
    const hasPolicy = body.placement !== undefined;
    if (hasRegion === hasPolicy) {
      ctx.addIssue({
        code: "custom",
        path: [hasRegion ? "placement" : "region"],
        message: "give exactly one of region and placement",
      });
    }
  })
  .openapi("ExplainPlacement");
export type ExplainPlacement = z.infer<typeof ExplainPlacementSchema>;

export const PlacementCandidateSchema = z
  .object({
    datacenter: NameSchema,
    region: NameSchema,
    outcome: z.enum(CANDIDATE_OUTCOMES).openapi({
      description: "chosen; eligible (passed every check, lost to the chosen one); or refused.",
    }),
    reasons: z.array(z.string()),
    transfer_bytes: z.number().int().min(0).openapi({
      description:
        "Bytes of image this datacenter would receive: 0 when it holds the version, else the version size (an upper bound when it holds an older version: only missing chunks move).",
    }),
  })
  .openapi("PlacementCandidate");
export type PlacementCandidate = z.infer<typeof PlacementCandidateSchema>;

export const PlacementExplanationSchema = z
  .object({
    decision: z.object({ datacenter: NameSchema, region: NameSchema }).nullable(),
    candidates: z.array(PlacementCandidateSchema),
  })
  .openapi("PlacementExplanation");
export type PlacementExplanation = z.infer<typeof PlacementExplanationSchema>;

/** The 422 when no datacenter can take the group: every candidate and its reasons. */
export const NoPlacementProblemSchema = ProblemSchema.extend({
  candidates: z.array(PlacementCandidateSchema).optional(),
}).openapi("NoPlacementProblem");
export type NoPlacementProblem = z.infer<typeof NoPlacementProblemSchema>;
