import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { CreateProjectSchema, ProjectSchema } from "../../../schemas/projects.ts";
import { requireScope } from "../../auth.ts";
import { toProject } from "../../catalog/mappers.ts";
import { createDefaultNetwork } from "../../catalog/networks.ts";
import { quotaColumns } from "../../catalog/quotas.ts";
import { projects } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { withIdempotency } from "../../idempotency.ts";
import { newId } from "../../ids.ts";
import { bearerAuth, jsonBody, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "post",
  path: "/v1/projects",
  operationId: "createProject",
  tags: ["admin"],
  summary: "Create a project (admin), with its quotas (the defaults for those not given)",
  security: bearerAuth,
  request: { body: jsonBody(CreateProjectSchema) },
  responses: {
    201: jsonResponse(ProjectSchema, "The new project."),
    ...problemResponses(400, 401, 403, 409, 413),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    requireScope(c, "admin");
    const body = c.req.valid("json");
    const { db } = c.get("services");
    const response = await withIdempotency(c, body, async () => {
      const row = await db.transaction(async (tx) => {
        const [created] = await tx
          .insert(projects)
          .values({ id: newId("project"), name: body.name, ...quotaColumns(body.quotas) })
          .onConflictDoNothing()
          .returning();
        if (created) await createDefaultNetwork(tx, created.id);
        return created;
      });
      if (!row) throw errors.conflict("already_exists", `A project named ${body.name} already exists.`);
      return { status: 201 as const, body: toProject(row) };
    });
    return c.json(response.body as ReturnType<typeof toProject>, 201);
  });
}
