import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { eq } from "drizzle-orm";
import { requireProject } from "../../auth.ts";
import { findFirewallRule } from "../../catalog/firewall-rules.ts";
import { firewallRules } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, problemResponses } from "../../openapi.ts";
import { RuleParams } from "./params.ts";

export const route = createRoute({
  method: "delete",
  path: "/v1/networks/{id}/firewall-rules/{rule_id}",
  operationId: "deleteFirewallRule",
  tags: ["firewall rules"],
  summary: "Delete a firewall rule; traffic it decided follows the next matching rule or the default",
  security: bearerAuth,
  request: { params: RuleParams },
  responses: { 204: { description: "Deleted." }, ...problemResponses(400, 401, 403, 404) },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "write");
    const { id, rule_id } = c.req.valid("param");
    const services = c.get("services");
    if (!(await findFirewallRule(services.db, projectId, id, rule_id))) {
      throw errors.notFound("firewall rule", rule_id);
    }
    await services.db.delete(firewallRules).where(eq(firewallRules.id, rule_id));
    await services.firewallChanged?.(id);
    return c.body(null, 204);
  });
}
