import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, arrayContains, asc, eq, gt } from "drizzle-orm";
import { NameSchema, PageQuerySchema, pageOf } from "../../../schemas/common.ts";
import { ImageSchema } from "../../../schemas/images.ts";
import { requireProject } from "../../auth.ts";
import { hydrateImages } from "../../catalog/images.ts";
import { images } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";
import { decodePageToken, encodePageToken } from "../../pagination.ts";

export const route = createRoute({
  method: "get",
  path: "/v1/images",
  operationId: "listImages",
  tags: ["images"],
  summary:
    "List the project's images, or the images other projects share with it, optionally by name or family",
  security: bearerAuth,
  request: {
    query: PageQuerySchema.extend({
      name: NameSchema.optional(),
      family: NameSchema.optional(),
      shared: z.enum(["true", "false"]).default("false").openapi({
        description: "`true` lists the images other projects share with this one instead of its own.",
      }),
    }),
  },
  responses: {
    200: jsonResponse(pageOf(ImageSchema, "ImagePage"), "A page of images."),
    ...problemResponses(400, 401, 403),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "read");
    const { page_size, page_token, name, family, shared } = c.req.valid("query");
    const after = decodePageToken(page_token, "image");
    const { db } = c.get("services");
    const rows = await db
      .select()
      .from(images)
      .where(
        and(
          shared === "true" ? arrayContains(images.members, [projectId]) : eq(images.projectId, projectId),
          name ? eq(images.name, name) : undefined,
          family ? eq(images.family, family) : undefined,
          after ? gt(images.id, after) : undefined,
        ),
      )
      .orderBy(asc(images.id))
      .limit(page_size + 1);
    const page = rows.slice(0, page_size);
    const last = page.at(-1);
    return c.json(
      {
        items: await hydrateImages(db, page, projectId),
        next_page_token: rows.length > page_size && last ? encodePageToken(last.id) : null,
      },
      200,
    );
  });
}
