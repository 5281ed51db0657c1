import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { asc, gt, inArray } from "drizzle-orm";
import { PageQuerySchema, pageOf } from "../../../schemas/common.ts";
import { RegionSchema } from "../../../schemas/regions.ts";
import { requireScope } from "../../auth.ts";
import { toRegion } from "../../catalog/mappers.ts";
import { datacenters, regions } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";
import { decodeNameToken, encodeNameToken } from "../../pagination.ts";

export const route = createRoute({
  method: "get",
  path: "/v1/regions",
  operationId: "listRegions",
  tags: ["regions"],
  summary: "List regions and their datacenters",
  security: bearerAuth,
  request: { query: PageQuerySchema },
  responses: {
    200: jsonResponse(pageOf(RegionSchema, "RegionPage"), "A page of regions."),
    ...problemResponses(400, 401, 403),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    requireScope(c, "read");
    const { page_size, page_token } = c.req.valid("query");
    const after = decodeNameToken(page_token);
    const { db } = c.get("services");
    const rows = await db
      .select()
      .from(regions)
      .where(after ? gt(regions.name, after) : undefined)
      .orderBy(asc(regions.name))
      .limit(page_size + 1);
    const page = rows.slice(0, page_size);
    const dcs = page.length
      ? await db
          .select({ name: datacenters.name, region: datacenters.region })
          .from(datacenters)
          .where(
            inArray(
              datacenters.region,
              page.map((r) => r.name),
            ),
          )
          .orderBy(asc(datacenters.name))
      : [];
    const last = page.at(-1);
    return c.json(
      {
        items: page.map((r) =>
          toRegion(
            r,
            dcs.filter((d) => d.region === r.name).map((d) => d.name),
          ),
        ),
        next_page_token: rows.length > page_size && last ? encodeNameToken(last.name) : null,
      },
      200,
    );
  });
}
