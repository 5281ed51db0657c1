// An image's versions as the API shows them: each uploaded version with its digest and size,
// whether it is the image's current one, and where it is held (per datacenter, with bytes).
import { z } from "@hono/zod-openapi";
import { ImageReplicaSchema, ImageVersionSchema } from "./images.ts";

export const ImageVersionDetailSchema = ImageVersionSchema.extend({
  current: z.boolean().openapi({ description: "Whether this is the image's current version." }),
  replicas: z
    .array(ImageReplicaSchema)
    .openapi({ description: "The datacenters holding this version or receiving it, with their bytes." }),
}).openapi("ImageVersionDetail");
export type ImageVersionDetail = z.infer<typeof ImageVersionDetailSchema>;

export const ImageVersionListSchema = z
  .object({ items: z.array(ImageVersionDetailSchema).openapi({ description: "Newest first." }) })
  .openapi("ImageVersionList");
