import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { eq } from "drizzle-orm";
import { idSchema } from "../../../schemas/common.ts";
import { CreatedTokenSchema, CreateTokenSchema } from "../../../schemas/projects.ts";
import { hashSecret, newTokenSecret, requireScope } from "../../auth.ts";
import { toToken } from "../../catalog/mappers.ts";
import { apiTokens, projects } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { newId } from "../../ids.ts";
import { bearerAuth, jsonBody, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "post",
  path: "/v1/projects/{id}/tokens",
  operationId: "createProjectToken",
  tags: ["admin"],
  summary: "Create an API token for a project (admin); its secret is shown once",
  security: bearerAuth,
  request: { params: z.object({ id: idSchema("project") }), body: jsonBody(CreateTokenSchema) },
  responses: {
    201: jsonResponse(CreatedTokenSchema, "The token with its secret."),
    ...problemResponses(400, 401, 403, 404),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    requireScope(c, "admin");
    const { id } = c.req.valid("param");
    const body = c.req.valid("json");
    if (body.scopes.includes("admin")) {
      throw errors.validation([{ path: "scopes", message: "project tokens cannot have the admin scope" }]);
    }
    const { db } = c.get("services");
    const [project] = await db.select({ id: projects.id }).from(projects).where(eq(projects.id, id)).limit(1);
    if (!project) throw errors.notFound("project", id);
    const secret = newTokenSecret();
    const [row] = await db
      .insert(apiTokens)
      .values({
        id: newId("token"),
        name: body.name,
        projectId: id,
        secretHash: hashSecret(secret),
        scopes: [...new Set(body.scopes)],
      })
      .returning();
    if (!row) throw new Error("insert returned no token");
    return c.json({ ...toToken(row), secret }, 201);
  });
}
