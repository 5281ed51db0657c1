import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { CreateNetworkSchema, defaultSubnetPrefixLength, NetworkSchema } from "../../../schemas/networks.ts";
import { requireProject } from "../../auth.ts";
import { toNetwork } from "../../catalog/mappers.ts";
import { networks } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { withIdempotency } from "../../idempotency.ts";
import { newId } from "../../ids.ts";
import { bearerAuth, jsonBody, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "post",
  path: "/v1/networks",
  operationId: "createNetwork",
  tags: ["networks"],
  summary: "Create a network",
  description:
    "A private IPv4 network of the project. It spans every region: each datacenter gets a subnet of it when the network first needs one there.",
  security: bearerAuth,
  request: { body: jsonBody(CreateNetworkSchema) },
  responses: {
    201: jsonResponse(NetworkSchema, "The new network."),
    ...problemResponses(400, 401, 403, 409, 413),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "write");
    const body = c.req.valid("json");
    const { db } = c.get("services");
    const response = await withIdempotency(c, body, async () => {
      const [row] = await db
        .insert(networks)
        .values({
          id: newId("network"),
          projectId,
          name: body.name,
          cidr: body.cidr,
          subnetPrefixLength: body.subnet_prefix_length ?? defaultSubnetPrefixLength(body.cidr),
          labels: body.labels,
        })
        .onConflictDoNothing()
        .returning();
      if (!row) throw errors.conflict("already_exists", `A network named ${body.name} already exists.`);
      return { status: 201 as const, body: toNetwork(row) };
    });
    return c.json(response.body as ReturnType<typeof toNetwork>, 201);
  });
}
