import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { and, asc, eq, gt } from "drizzle-orm";
import { NameSchema, PageQuerySchema, pageOf } from "../../../schemas/common.ts";
import { DatacenterSchema } from "../../../schemas/regions.ts";
import { requireScope } from "../../auth.ts";
import { toDatacenter } from "../../catalog/mappers.ts";
import { datacenters } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";
import { decodeNameToken, encodeNameToken } from "../../pagination.ts";

export const route = createRoute({
  method: "get",
  path: "/v1/datacenters",
  operationId: "listDatacenters",
  tags: ["regions"],
  summary: "List datacenters, optionally of one region",
  security: bearerAuth,
  request: { query: PageQuerySchema.extend({ region: NameSchema.optional() }) },
  responses: {
    200: jsonResponse(pageOf(DatacenterSchema, "DatacenterPage"), "A page of datacenters."),
    ...problemResponses(400, 401, 403),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    requireScope(c, "read");
    const { page_size, page_token, region } = c.req.valid("query");
    const after = decodeNameToken(page_token);
    const { db, now } = c.get("services");
    const rows = await db
      .select()
      .from(datacenters)
      .where(
        and(
          region ? eq(datacenters.region, region) : undefined,
          after ? gt(datacenters.name, after) : undefined,
        ),
      )
      .orderBy(asc(datacenters.name))
      .limit(page_size + 1);
    const page = rows.slice(0, page_size);
    const last = page.at(-1);
    const at = now();
    return c.json(
      {
        items: page.map((r) => toDatacenter(r, at)),
        next_page_token: rows.length > page_size && last ? encodeNameToken(last.name) : null,
      },
      200,
    );
  });
}
