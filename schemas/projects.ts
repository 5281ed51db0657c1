import { z } from "@hono/zod-openapi";
import { idSchema, NameSchema, TimestampSchema } from "./common.ts";

export const TOKEN_SCOPES = ["read", "write", "admin"] as const;
export const TokenScopeSchema = z.enum(TOKEN_SCOPES);
export type TokenScope = z.infer<typeof TokenScopeSchema>;

export const ProjectSchema = z
  .object({ id: idSchema("project"), name: NameSchema, created_at: TimestampSchema })
  .openapi("Project");
export type Project = z.infer<typeof ProjectSchema>;

export const CreateProjectSchema = z.strictObject({ name: NameSchema }).openapi("CreateProject");

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
