import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { asc, eq } from "drizzle-orm";
import { FirewallRuleSchema, MAX_RULES_PER_NETWORK } from "../../../schemas/firewall-rules.ts";
import { requireProject } from "../../auth.ts";
import { toFirewallRule } from "../../catalog/mappers.ts";
import { findNetwork } from "../../catalog/networks.ts";
import { firewallRules } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";
import { NetworkParams } from "./params.ts";

export const route = createRoute({
  method: "get",
  path: "/v1/networks/{id}/firewall-rules",
  operationId: "listFirewallRules",
  tags: ["firewall rules"],
  summary: "A network's rules, in the order they are evaluated",
  description: `At most ${MAX_RULES_PER_NETWORK} rules per network, so the list comes whole: by priority, then by name.`,
  security: bearerAuth,
  request: { params: NetworkParams },
  responses: {
    200: jsonResponse(
      z.object({ items: z.array(FirewallRuleSchema) }).openapi("FirewallRuleList"),
      "The network's rules.",
    ),
    ...problemResponses(400, 401, 403, 404),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "read");
    const { id } = c.req.valid("param");
    const { db } = c.get("services");
    if (!(await findNetwork(db, projectId, id))) throw errors.notFound("network", id);
    const rows = await db
      .select()
      .from(firewallRules)
      .where(eq(firewallRules.networkId, id))
      .orderBy(asc(firewallRules.priority), asc(firewallRules.name));
    return c.json({ items: rows.map(toFirewallRule) }, 200);
  });
}
