import { z } from "@hono/zod-openapi";
import { idSchema, NameSchema, TimestampSchema } from "./common.ts";

/** `metrics`: reads the control plane's /metrics and nothing else (a Prometheus scraper's token). */
export const TOKEN_SCOPES = ["read", "write", "admin", "metrics"] as const;
export const TokenScopeSchema = z.enum(TOKEN_SCOPES);
export type TokenScope = z.infer<typeof TokenScopeSchema>;

export const QUOTA_NAMES = ["storage_bytes", "images", "instances", "vcpus"] as const;
export type QuotaName = (typeof QUOTA_NAMES)[number];

const quota = (description: string) =>
  z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).openapi({ description });
export const QuotasSchema = z
  .object({
    storage_bytes: quota("Bytes of image versions the project may store (each version counted once)."),
    images: quota("Images the project may have."),
    instances: quota("Instances its VM groups may ask for, added up."),
    vcpus: quota("vCPUs its VM groups may ask for (size × machine.vcpus), added up."),
  })
  .openapi("Quotas");
export type Quotas = z.infer<typeof QuotasSchema>;

/** An admin's quotas: each one given sets it, null returns it to the default. */
export const SetQuotasSchema = z
  .strictObject({
    storage_bytes: QuotasSchema.shape.storage_bytes.nullable().optional(),
    images: QuotasSchema.shape.images.nullable().optional(),
    instances: QuotasSchema.shape.instances.nullable().optional(),
    vcpus: QuotasSchema.shape.vcpus.nullable().optional(),
  })
  .openapi("SetQuotas");
export type SetQuotas = z.infer<typeof SetQuotasSchema>;

export const ProjectSchema = z
  .object({
    id: idSchema("project"),
    name: NameSchema,
    quotas: QuotasSchema.openapi({ description: "What the project may use (an admin sets them)." }),
    created_at: TimestampSchema,
  })
  .openapi("Project");
export type Project = z.infer<typeof ProjectSchema>;

export const CreateProjectSchema = z
  .strictObject({ name: NameSchema, quotas: SetQuotasSchema.optional() })
  .openapi("CreateProject");

export const UpdateProjectSchema = z.strictObject({ quotas: SetQuotasSchema }).openapi("UpdateProject");

export const TokenSchema = z
  .object({
    id: idSchema("token"),
    name: z.string(),
    project_id: idSchema("project").nullable().openapi({ description: "Null for admin tokens." }),
    scopes: z.array(TokenScopeSchema),
    created_at: TimestampSchema,
  })
  .openapi("Token");
export type Token = z.infer<typeof TokenSchema>;

export const CreateTokenSchema = z
  .strictObject({
    name: z.string().min(1).max(100),
    scopes: z.array(TokenScopeSchema).min(1).default(["read", "write"]),
  })
  .openapi("CreateToken");

export const CreatedTokenSchema = TokenSchema.extend({
  secret: z.string().openapi({ description: "Shown once; only its hash is stored." }),
}).openapi("CreatedToken");
