import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { eq, sql } from "drizzle-orm";
import {
  CreateFirewallRuleSchema,
  FirewallRuleSchema,
  MAX_RULES_PER_NETWORK,
} from "../../../schemas/firewall-rules.ts";
import { requireProject } from "../../auth.ts";
import { sourceColumns } from "../../catalog/firewall-rules.ts";
import { toFirewallRule } from "../../catalog/mappers.ts";
import { findNetwork } from "../../catalog/networks.ts";
import { firewallRules } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { withIdempotency } from "../../idempotency.ts";
import { newId } from "../../ids.ts";
import { bearerAuth, jsonBody, jsonResponse, problemResponses } from "../../openapi.ts";
import { NetworkParams } from "./params.ts";

export const route = createRoute({
  method: "post",
  path: "/v1/networks/{id}/firewall-rules",
  operationId: "createFirewallRule",
  tags: ["firewall rules"],
  summary: "Add an ingress rule to a network",
  description:
    "Rules are evaluated by priority, lowest first, and the first that matches decides. Traffic no rule matches follows the network's default: the `default` network allows traffic between its own instances, any other network denies ingress until a rule allows it. The rule reaches running guests in every datacenter without restarting them.",
  security: bearerAuth,
  request: { params: NetworkParams, body: jsonBody(CreateFirewallRuleSchema) },
  responses: {
    201: jsonResponse(FirewallRuleSchema, "The new rule."),
    ...problemResponses(400, 401, 403, 404, 409, 413),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "write");
    const { id } = c.req.valid("param");
    const body = c.req.valid("json");
    const services = c.get("services");
    if (!(await findNetwork(services.db, projectId, id))) throw errors.notFound("network", id);
    const [{ count } = { count: 0 }] = await services.db
      .select({ count: sql<number>`count(*)::int` })
      .from(firewallRules)
      .where(eq(firewallRules.networkId, id));
    if (count >= MAX_RULES_PER_NETWORK) {
      throw errors.conflict(
        "too_many_rules",
        `A network holds at most ${MAX_RULES_PER_NETWORK} firewall rules; merge or delete some first.`,
      );
    }
    const response = await withIdempotency(c, body, async () => {
      const [row] = await services.db
        .insert(firewallRules)
        .values({
          id: newId("firewallRule"),
          networkId: id,
          name: body.name,
          description: body.description,
          priority: body.priority,
          action: body.action,
          protocol: body.protocol,
          ports: body.ports,
          ...sourceColumns(body.source),
        })
        .onConflictDoNothing()
        .returning();
      if (!row) throw errors.conflict("already_exists", `The network has a rule named ${body.name} already.`);
      return { status: 201 as const, body: toFirewallRule(row) };
    });
    await services.firewallChanged?.(id);
    return c.json(response.body as ReturnType<typeof toFirewallRule>, 201);
  });
}
