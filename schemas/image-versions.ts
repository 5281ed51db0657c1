// An image's versions as the API shows them: each uploaded version with its digest and size,
// its lifecycle state, whether it is the image's current one, and where it is held (per
// datacenter, with bytes).
import { z } from "@hono/zod-openapi";
import { TimestampSchema } from "./common.ts";
import { ImageReplicaSchema, ImageVersionSchema } from "./images.ts";

/**
 * `active` boots anywhere; `deprecated` still boots, but groups that follow the image (or its
 * family) skip it; `obsolete` is refused for new instances, running ones keep it; `deleted`
 * has its replicas removed everywhere and can never boot again.
 */
export const VERSION_STATES = ["active", "deprecated", "obsolete", "deleted"] as const;
export type VersionState = (typeof VERSION_STATES)[number];
export const VersionStateSchema = z.enum(VERSION_STATES);

export const ImageVersionDetailSchema = ImageVersionSchema.extend({
  state: VersionStateSchema.openapi({
    description:
      "`active`; `deprecated` (still boots; groups following the image or its family skip it); `obsolete` (refused for new instances); `deleted` (its replicas are gone).",
  }),
  deprecate_at: TimestampSchema.nullable().openapi({
    description: "When the control plane deprecates the version on its own; null for never.",
  }),
  obsolete_at: TimestampSchema.nullable().openapi({
    description: "When the control plane makes the version obsolete on its own; null for never.",
  }),
  current: z.boolean().openapi({ description: "Whether this is the image's current version." }),
  replicas: z
    .array(ImageReplicaSchema)
    .openapi({ description: "The datacenters holding this version or receiving it, with their bytes." }),
}).openapi("ImageVersionDetail");
export type ImageVersionDetail = z.infer<typeof ImageVersionDetailSchema>;

export const ImageVersionListSchema = z
  .object({ items: z.array(ImageVersionDetailSchema).openapi({ description: "Newest first." }) })
  .openapi("ImageVersionList");

export const UpdateImageVersionSchema = z
  .strictObject({
    state: z
      .enum(["active", "deprecated", "obsolete"])
      .optional()
      .openapi({ description: "The state now. Deleting a version is `DELETE` on it." }),
    deprecate_at: TimestampSchema.nullable()
      .optional()
      .openapi({ description: "Deprecate the version at this time; null clears it." }),
    obsolete_at: TimestampSchema.nullable()
      .optional()
      .openapi({ description: "Make the version obsolete at this time; null clears it." }),
  })
  .refine((b) => b.state !== undefined || b.deprecate_at !== undefined || b.obsolete_at !== undefined, {
    message: "give state, deprecate_at or obsolete_at",
  })
  .refine(
    (b) => !b.deprecate_at || !b.obsolete_at || Date.parse(b.deprecate_at) <= Date.parse(b.obsolete_at),
    {
      message: "deprecate_at must not be after obsolete_at",
      path: ["obsolete_at"],
    },
  )
  .openapi("UpdateImageVersion");
export type UpdateImageVersion = z.infer<typeof UpdateImageVersionSchema>;
