import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { FirewallRuleSchema } from "../../../schemas/firewall-rules.ts";
import { requireProject } from "../../auth.ts";
import { findFirewallRule } from "../../catalog/firewall-rules.ts";
import { toFirewallRule } from "../../catalog/mappers.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";
import { RuleParams } from "./params.ts";

export const route = createRoute({
  method: "get",
  path: "/v1/networks/{id}/firewall-rules/{rule_id}",
  operationId: "getFirewallRule",
  tags: ["firewall rules"],
  summary: "Get a firewall rule",
  security: bearerAuth,
  request: { params: RuleParams },
  responses: { 200: jsonResponse(FirewallRuleSchema, "The rule."), ...problemResponses(400, 401, 403, 404) },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "read");
    const { id, rule_id } = c.req.valid("param");
    const row = await findFirewallRule(c.get("services").db, projectId, id, rule_id);
    if (!row) throw errors.notFound("firewall rule", rule_id);
    return c.json(toFirewallRule(row), 200);
  });
}
