import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { idSchema } from "../../../schemas/common.ts";
import { ImageSchema } from "../../../schemas/images.ts";
import { requireProject } from "../../auth.ts";
import { findReadableImage, hydrateImages } from "../../catalog/images.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "get",
  path: "/v1/images/{id}",
  operationId: "getImage",
  tags: ["images"],
  summary: "Get an image with its replicas",
  security: bearerAuth,
  request: { params: z.object({ id: idSchema("image") }) },
  responses: { 200: jsonResponse(ImageSchema, "The image."), ...problemResponses(400, 401, 403, 404) },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "read");
    const { id } = c.req.valid("param");
    const { db } = c.get("services");
    const row = await findReadableImage(db, projectId, id);
    if (!row) throw errors.notFound("image", id);
    const [image] = await hydrateImages(db, [row], projectId);
    return c.json(image as NonNullable<typeof image>, 200);
  });
}
