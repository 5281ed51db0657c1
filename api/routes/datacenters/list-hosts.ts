import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { eq } from "drizzle-orm";
import { NameSchema, PageQuerySchema, pageOf } from "../../../schemas/common.ts";
import { HostSchema } from "../../../schemas/datacenter-hosts.ts";
import { requireScope } from "../../auth.ts";
import { datacenterStatus } from "../../catalog/datacenter-status.ts";
import { datacenterHostsPage } from "../../catalog/hosts.ts";
import { toHost } from "../../catalog/mappers.ts";
import { datacenters } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";
import { decodeNameToken, encodeNameToken } from "../../pagination.ts";

export const route = createRoute({
  method: "get",
  path: "/v1/datacenters/{name}/hosts",
  operationId: "listDatacenterHosts",
  tags: ["regions"],
  summary: "List a datacenter's hosts: their state, capacity, load and image cache",
  description:
    "The hosts as the datacenter's manager last reported them in its heartbeat, by name. Empty for a datacenter whose manager runs its guests itself (no host agents). A host is `down` whenever the datacenter is not `up`: its facts are only as fresh as the manager's last heartbeat.",
  security: bearerAuth,
  request: { params: z.object({ name: NameSchema }), query: PageQuerySchema },
  responses: {
    200: jsonResponse(pageOf(HostSchema, "HostPage"), "A page of the datacenter's hosts."),
    ...problemResponses(400, 401, 403, 404),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    requireScope(c, "read");
    const { name } = c.req.valid("param");
    const { page_size, page_token } = c.req.valid("query");
    const after = decodeNameToken(page_token);
    const { db, now } = c.get("services");
    const [datacenter] = await db
      .select({ lastHeartbeatAt: datacenters.lastHeartbeatAt })
      .from(datacenters)
      .where(eq(datacenters.name, name))
      .limit(1);
    if (!datacenter) throw errors.notFound("datacenter", name);
    const up = datacenterStatus(datacenter.lastHeartbeatAt, now()) === "up";
    const rows = await datacenterHostsPage(db, name, after, page_size + 1);
    const page = rows.slice(0, page_size);
    const last = page.at(-1);
    return c.json(
      {
        items: page.map((row) => toHost(row, up)),
        next_page_token: rows.length > page_size && last ? encodeNameToken(last.name) : null,
      },
      200,
    );
  });
}
