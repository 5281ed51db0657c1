import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { eq } from "drizzle-orm";
import { FirewallRuleSchema, UpdateFirewallRuleSchema } from "../../../schemas/firewall-rules.ts";
import { requireProject } from "../../auth.ts";
import { findFirewallRule, sourceColumns } from "../../catalog/firewall-rules.ts";
import { toFirewallRule } from "../../catalog/mappers.ts";
import { firewallRules } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonBody, jsonResponse, problemResponses } from "../../openapi.ts";
import { RuleParams } from "./params.ts";

export const route = createRoute({
  method: "patch",
  path: "/v1/networks/{id}/firewall-rules/{rule_id}",
  operationId: "updateFirewallRule",
  tags: ["firewall rules"],
  summary: "Change a firewall rule in place",
  security: bearerAuth,
  request: { params: RuleParams, body: jsonBody(UpdateFirewallRuleSchema) },
  responses: {
    200: jsonResponse(FirewallRuleSchema, "The rule as changed."),
    ...problemResponses(400, 401, 403, 404),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "write");
    const { id, rule_id } = c.req.valid("param");
    const body = c.req.valid("json");
    const services = c.get("services");
    const current = await findFirewallRule(services.db, projectId, id, rule_id);
    if (!current) throw errors.notFound("firewall rule", rule_id);
    // Ports are checked against the protocol the rule ends up with, changed or not.
    const protocol = body.protocol ?? current.protocol;
    const ports = body.ports ?? current.ports;
    if (ports.length > 0 && protocol !== "tcp" && protocol !== "udp") {
      throw errors.validation([
        { path: "ports", message: `ports apply to tcp and udp, not ${protocol}; send "ports": [] with it` },
      ]);
    }
    const [row] = await services.db
      .update(firewallRules)
      .set({
        ...(body.description !== undefined ? { description: body.description } : {}),
        ...(body.priority !== undefined ? { priority: body.priority } : {}),
        ...(body.action !== undefined ? { action: body.action } : {}),
        ...(body.protocol !== undefined ? { protocol: body.protocol } : {}),
        ...(body.ports !== undefined ? { ports: body.ports } : {}),
        ...(body.source !== undefined ? sourceColumns(body.source) : {}),
        updatedAt: services.now(),
      })
      .where(eq(firewallRules.id, rule_id))
      .returning();
    if (!row) throw errors.notFound("firewall rule", rule_id);
    await services.firewallChanged?.(id);
    return c.json(toFirewallRule(row), 200);
  });
}
