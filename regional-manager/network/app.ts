// The control plane's requests about a network on this manager's hosts: its firewall rules.
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { ProblemError } from "../../common/http/problem.ts";
import type { NetworkTokenVerifier } from "../../common/tokens/network-token.ts";
import { idSchema } from "../../schemas/common.ts";
import { ManagerNetworkFirewallSchema } from "../../schemas/manager-instances.ts";
import { requireObjectToken } from "../http/object-token.ts";
import { type Log, managerRoutes, networkTokenSecurity, problemResponses } from "../http/openapi.ts";
import type { InstanceManager } from "../instances/instance-manager.ts";

export const networkRoutes = {
  putFirewall: createRoute({
    method: "put",
    path: "/v1/networks/{id}/firewall",
    operationId: "putNetworkFirewall",
    tags: ["networks"],
    summary:
      "Replace the network's firewall on this datacenter's hosts (kept unless a newer revision is held); running guests are not restarted",
    security: networkTokenSecurity,
    request: {
      params: z.object({ id: idSchema("network").openapi({ param: { name: "id", in: "path" } }) }),
      body: { required: true, content: { "application/json": { schema: ManagerNetworkFirewallSchema } } },
    },
    responses: {
      200: {
        description: "The revision now held",
        content: { "application/json": { schema: z.object({ revision: z.number().int() }) } },
      },
      ...problemResponses(400, 401, 403, 409),
    },
  }),
};

export function createNetworkApp(options: {
  instances: InstanceManager;
  verifier: NetworkTokenVerifier;
  log?: Log;
}): OpenAPIHono {
  const app = managerRoutes(options.log);
  app.use("/v1/networks/:id/firewall", requireObjectToken(options.verifier));
  app.openapi(networkRoutes.putFirewall, async (c) => {
    const { id } = c.req.valid("param");
    const firewall = c.req.valid("json");
    if (!(await options.instances.setFirewall(id, firewall))) {
      throw new ProblemError(
        409,
        "no_guest_network",
        "this manager attaches no guests to networks (it runs without --guest-network)",
      );
    }
    return c.json({ revision: options.instances.firewallRevision(id) ?? firewall.revision }, 200);
  });
  return app;
}
