// What regional managers and upload clients exchange with the control plane.
import { z } from "@hono/zod-openapi";
import { idSchema, NameSchema, Sha256DigestSchema, TimestampSchema } from "./common.ts";
import { CapacitySchema, DRIVER_KINDS } from "./regions.ts";

export const CreateManagerCredentialSchema = z
  .strictObject({ region: NameSchema, datacenter: NameSchema })
  .openapi("CreateManagerCredential");

export const ManagerCredentialSchema = z
  .object({
    id: idSchema("token"),
    region: NameSchema,
    datacenter: NameSchema,
    secret: z.string().openapi({ description: "Shown once: give it to the datacenter's regional manager." }),
    created_at: TimestampSchema,
  })
  .openapi("ManagerCredential");

export const ManagerRegistrationSchema = z
  .strictObject({
    region: NameSchema,
    manager_url: z.string().url(),
    driver: z.enum(DRIVER_KINDS).default("qemu"),
    capacity: CapacitySchema.strict(),
  })
  .openapi("ManagerRegistration");

/** Where and how to send the bytes of one image version. */
export const UploadTicketSchema = z
  .object({
    image_id: idSchema("image"),
    version: z.number().int().min(1),
    datacenter: NameSchema,
    url: z.string().url().openapi({ description: "Base URL of the origin datacenter's regional manager." }),
    token: z.string().openapi({ description: "Bearer token for the upload endpoints of that manager." }),
    expires_at: TimestampSchema,
    max_bytes: z.number().int().min(0).openapi({
      description:
        "The largest version this ticket uploads: what the project's storage quota leaves, or the size declared.",
    }),
  })
  .openapi("UploadTicket");

export const CreateUploadSchema = z
  .strictObject({
    size: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional().openapi({
      description:
        "Size of the version to upload, in bytes: refused at once if the storage quota does not cover it.",
    }),
  })
  .openapi("CreateUpload");
export type UploadTicket = z.infer<typeof UploadTicketSchema>;

export const ReplicaReportSchema = z
  .strictObject({
    state: z.enum(["transferring", "available", "failed"]),
    local_id: z.string().min(1).max(200).optional(),
    digest: Sha256DigestSchema.optional(),
    manifest_digest: Sha256DigestSchema.optional().openapi({
      description:
        "SHA-256 of the version's manifest (size, digest and ordered chunk list): the upload's commit records it, and a pull checks the manifest it is sent against it.",
    }),
    size: z.number().int().min(0).optional(),
    chunk_count: z.number().int().min(0).optional(),
    bytes_done: z.number().int().min(0).optional().openapi({
      description:
        "Bytes of the version this datacenter holds, chunks it had before the pull (an earlier attempt, other images) included; at most bytes_total.",
    }),
    bytes_total: z.number().int().min(0).optional().openapi({ description: "The version's size." }),
    bytes_received: z
      .number()
      .int()
      .min(0)
      .optional()
      .openapi({ description: "Chunk data this pull received: what crossed the network." }),
    error: z.string().max(2000).optional(),
  })
  .superRefine((report, ctx) => {
    if (report.state === "available") {
      for (const field of ["local_id", "digest", "size"] as const) {
        if (report[field] === undefined)
          ctx.addIssue({ code: "custom", path: [field], message: "required when available" });
      }
    }
  })
  .openapi("ReplicaReport");
export type ReplicaReport = z.infer<typeof ReplicaReportSchema>;

export const ReplicaSourcesSchema = z
  .object({
    image_id: idSchema("image"),
    version: z.number().int().min(1),
    project_id: idSchema("project").openapi({
      description: "The image's project: the manager scopes its answers about stored chunks by it.",
    }),
    digest: Sha256DigestSchema,
    manifest_digest: Sha256DigestSchema.optional().openapi({
      description:
        "The version's manifest digest, when its upload recorded one: a manifest that has it, and chunks that match it, are the whole version.",
    }),
    size: z.number().int().min(0),
    format: z.enum(["raw", "qcow2", "iso"]),
    sources: z.array(
      z.object({
        datacenter: NameSchema,
        region: NameSchema,
        url: z.string().url(),
        token: z.string().openapi({ description: "A read token for that source manager." }),
      }),
    ),
  })
  .openapi("ReplicaSources");
export type ReplicaSources = z.infer<typeof ReplicaSourcesSchema>;

export const RotateSigningKeySchema = z
  .strictObject({
    signs_after_seconds: z
      .number()
      .int()
      .min(0)
      .max(7 * 24 * 3600)
      .default(0)
      .openapi({
        description:
          "Publish the new key at once but sign with it only after this delay: time to copy the JWKS into managers' --control-plane-keys files. 0 (default): it signs at once.",
      }),
  })
  .openapi("RotateSigningKey");

export const SigningKeyRotationSchema = z
  .object({
    kid: z.string().openapi({ description: "The new key's id, the `kid` of the tokens it signs." }),
    algorithm: z.string(),
    public_jwk: z.record(z.string(), z.unknown()),
    signs_from: TimestampSchema,
    previous: z
      .object({
        kid: z.string(),
        verifies_until: TimestampSchema.openapi({
          description: "It stays in the JWKS until every token it signed has expired.",
        }),
      })
      .nullable(),
  })
  .openapi("SigningKeyRotation");
