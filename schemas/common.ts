import { z } from "@hono/zod-openapi";
import { ID_PREFIXES, type IdKind, idPattern, MAX_LISTED_IDS } from "./plain.ts";

export { ID_PREFIXES, type IdKind };

export function idSchema(kind: IdKind) {
  const prefix = ID_PREFIXES[kind];
  return z
    .string()
    .regex(idPattern(kind), `must be a ${kind} ID like ${prefix}_…`)
    .openapi({ example: `${prefix}_01jd3k9x4m6q8r2t5v7w9y1z3b` });
}

/** Names of projects, images, VM groups, regions and datacenters: DNS-label-like, so they fit in URLs and hostnames. */
export const NameSchema = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z]([a-z0-9-]*[a-z0-9])?$/, "must be lowercase letters, digits and '-', starting with a letter")
  .openapi({ example: "web" });

export const LabelsSchema = z
  .record(
    z
      .string()
      .regex(
        /^[a-z][a-z0-9_./-]{0,62}$/,
        "label keys are lowercase, start with a letter, at most 63 characters",
      ),
    z.string().max(256),
  )
  .refine((labels) => Object.keys(labels).length <= 64, "at most 64 labels")
  .openapi({ example: { team: "platform" } });

export const TimestampSchema = z.string().datetime().openapi({ example: "2026-11-22T04:00:00.000Z" });

export const Sha256DigestSchema = z
  .string()
  .regex(/^sha256:[0-9a-f]{64}$/, "must be sha256: followed by 64 lowercase hex digits")
  .openapi({ example: `sha256:${"0".repeat(64)}` });

export const PageQuerySchema = z.object({
  page_size: z.coerce.number().int().min(1).max(200).default(50).openapi({ description: "At most 200." }),
  page_token: z
    .string()
    .max(200)
    .optional()
    .openapi({ description: "The next_page_token of a previous page." }),
});

/**
 * A query parameter naming several IDs as OpenAPI's default form style sends an array
 * (`?id=a&id=b`): Hono hands over one value as a string and several as an array.
 */
export function idsQuerySchema(kind: IdKind) {
  return z.preprocess(
    (value) => (typeof value === "string" ? [value] : value),
    z.array(idSchema(kind)).min(1).max(MAX_LISTED_IDS),
  );
}

export function pageOf<T extends z.ZodType>(item: T, name: string) {
  return z
    .object({
      items: z.array(item),
      next_page_token: z.string().nullable().openapi({ description: "Null on the last page." }),
    })
    .openapi(name);
}

export const FieldErrorSchema = z.object({
  path: z.string().openapi({ example: "machine.vcpus" }),
  message: z.string(),
});

/** RFC 9457 problem details with a stable machine-readable `code`. */
export const ProblemSchema = z
  .object({
    type: z.string().openapi({ example: "https://globalvm.dev/problems/validation_failed" }),
    title: z.string(),
    status: z.number().int(),
    code: z.string().openapi({ example: "validation_failed" }),
    detail: z.string(),
    instance: z.string().optional(),
    errors: z.array(FieldErrorSchema).optional(),
    quota: z
      .object({
        name: z.string(),
        usage: z.number().int(),
        limit: z.number().int(),
        requested: z.number().int(),
      })
      .optional()
      .openapi({
        description: "With quota_exceeded: the quota, what the project uses, its limit, what was asked.",
      }),
  })
  .openapi("Problem");
export type Problem = z.infer<typeof ProblemSchema>;

/** What a datacenter, or one of its hosts, offers (or has free). */
export const CapacitySchema = z
  .object({
    vcpus: z.number().int().min(0),
    memory_mb: z.number().int().min(0),
    disk_bytes: z.number().int().min(0),
  })
  .openapi("Capacity");
export type Capacity = z.infer<typeof CapacitySchema>;
