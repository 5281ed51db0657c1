import { z } from "@hono/zod-openapi";
import { idSchema, LabelsSchema, NameSchema, Sha256DigestSchema, TimestampSchema } from "./common.ts";

export const IMAGE_FORMATS = ["raw", "qcow2", "iso"] as const;
export const ImageFormatSchema = z.enum(IMAGE_FORMATS);

export const IMAGE_STATES = ["awaiting-upload", "available"] as const;
export const REPLICA_STATES = ["pending", "transferring", "available", "stale", "failed"] as const;
export const ReplicaStateSchema = z.enum(REPLICA_STATES);
/**
 * Why a replica exists: `origin` the origin region's copy (it received the upload and keeps
 * every version), `replicate_to` the copy the replication policy keeps in one of its regions,
 * `on_demand` any other (made for a VM group or by request, or a copy the policy no longer
 * names): collected once unused.
 */
export const REPLICA_REASONS = ["origin", "replicate_to", "on_demand"] as const;
export const ReplicaReasonSchema = z.enum(REPLICA_REASONS);
export type ReplicaReason = z.infer<typeof ReplicaReasonSchema>;

export const ImageReplicaSchema = z
  .object({
    region: NameSchema,
    datacenter: NameSchema,
    version: z.number().int().min(1),
    local_id: z
      .string()
      .nullable()
      .openapi({ description: "The datacenter's own ID for this image version." }),
    state: ReplicaStateSchema,
    reason: ReplicaReasonSchema.openapi({
      description:
        "Why the replica exists: `origin` (the origin region's copy, which keeps every version), `replicate_to` (the copy the image's `replicate_to` keeps in that region), `on_demand` (any other: made for a VM group or by request, or a copy the policy no longer names; collected once unused).",
    }),
    bytes_done: z.number().int().min(0),
    bytes_total: z.number().int().min(0).nullable(),
    updated_at: TimestampSchema,
  })
  .openapi("ImageReplica");
export type ImageReplica = z.infer<typeof ImageReplicaSchema>;

export const ImageVersionSchema = z
  .object({
    version: z.number().int().min(1),
    size: z.number().int().min(0),
    digest: Sha256DigestSchema,
    chunk_count: z.number().int().min(0).nullable(),
    created_at: TimestampSchema,
  })
  .openapi("ImageVersion");
export type ImageVersion = z.infer<typeof ImageVersionSchema>;

const ReplicateToSchema = z
  .array(NameSchema)
  .max(32)
  .refine((regions) => new Set(regions).size === regions.length, "regions must not repeat")
  .openapi({ description: "Regions that must always hold the current version.", example: ["us-east"] });

const FamilySchema = NameSchema.openapi({
  description:
    "Groups of images of one purpose: GET /v1/image-families/{family} and VM groups naming it use the family's newest active image in the project.",
  example: "debian-web",
});

const MembersSchema = z
  .array(idSchema("project"))
  .max(64)
  .refine((ids) => new Set(ids).size === ids.length, "projects must not repeat")
  .openapi({
    description:
      "Projects the image is shared with, read-only: they can see it and boot VM groups from it, never change or delete it.",
  });

export const ImageSchema = z
  .object({
    id: idSchema("image"),
    project_id: idSchema("project"),
    name: NameSchema,
    format: ImageFormatSchema,
    origin_region: NameSchema,
    state: z.enum(IMAGE_STATES),
    version: z.number().int().min(1).nullable().openapi({
      description:
        "Current version: the one VM groups following the image run (`pinned_version` when set, else the newest active one); null until uploaded.",
    }),
    size: z.number().int().min(0).nullable(),
    digest: Sha256DigestSchema.nullable(),
    pinned_version: z.number().int().min(1).nullable().openapi({
      description:
        "The version set as current by hand (a rollback); null when `version` follows the newest active version.",
    }),
    family: FamilySchema.nullable(),
    members: MembersSchema.openapi({
      description: "Projects the image is shared with (shown to its own project only; empty for a member).",
    }),
    labels: LabelsSchema,
    replicate_to: z.array(NameSchema),
    replicas: z.array(ImageReplicaSchema),
    created_at: TimestampSchema,
    updated_at: TimestampSchema,
  })
  .openapi("Image");
export type Image = z.infer<typeof ImageSchema>;

export const CreateImageSchema = z
  .strictObject({
    name: NameSchema,
    format: ImageFormatSchema.default("qcow2"),
    origin_region: NameSchema.openapi({ description: "The region whose datacenter receives the upload." }),
    labels: LabelsSchema.default({}),
    replicate_to: ReplicateToSchema.default([]),
    family: FamilySchema.optional(),
    members: MembersSchema.optional(),
  })
  .openapi("CreateImage");

export const UpdateImageSchema = z
  .strictObject({
    labels: LabelsSchema.optional(),
    replicate_to: ReplicateToSchema.optional(),
    current_version: z.number().int().min(1).max(2_147_483_647).nullable().optional().openapi({
      description:
        "Set the current version by hand (an older one rolls every group following the image back to it, one instance at a time); null follows the newest active version again.",
    }),
    family: FamilySchema.nullable().optional(),
    members: MembersSchema.optional(),
  })
  .refine((body) => Object.values(body).some((v) => v !== undefined), {
    message: "give at least one field to change",
  })
  .openapi("UpdateImage");
