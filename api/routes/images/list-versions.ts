import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { idSchema } from "../../../schemas/common.ts";
import { ImageVersionListSchema } from "../../../schemas/image-versions.ts";
import { requireProject } from "../../auth.ts";
import { imageVersionDetails } from "../../catalog/image-versions.ts";
import { findReadableImage } from "../../catalog/images.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "get",
  path: "/v1/images/{id}/versions",
  operationId: "listImageVersions",
  tags: ["images"],
  summary: "List an image's versions, newest first, each with where it is held",
  security: bearerAuth,
  request: { params: z.object({ id: idSchema("image") }) },
  responses: {
    200: jsonResponse(ImageVersionListSchema, "The image's versions."),
    ...problemResponses(400, 401, 403, 404),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "read");
    const { id } = c.req.valid("param");
    const { db, now } = c.get("services");
    const image = await findReadableImage(db, projectId, id);
    if (!image) throw errors.notFound("image", id);
    return c.json({ items: await imageVersionDetails(db, image, now()) }, 200);
  });
}
