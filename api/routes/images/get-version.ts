import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { idSchema } from "../../../schemas/common.ts";
import { ImageVersionDetailSchema } from "../../../schemas/image-versions.ts";
import { requireProject } from "../../auth.ts";
import { imageVersionDetails } from "../../catalog/image-versions.ts";
import { findReadableImage } from "../../catalog/images.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "get",
  path: "/v1/images/{id}/versions/{version}",
  operationId: "getImageVersion",
  tags: ["images"],
  summary: "Get one version of an image: digest, size, and where it is held",
  security: bearerAuth,
  request: {
    params: z.object({ id: idSchema("image"), version: z.coerce.number().int().min(1).max(2_147_483_647) }),
  },
  responses: {
    200: jsonResponse(ImageVersionDetailSchema, "The version."),
    ...problemResponses(400, 401, 403, 404),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "read");
    const { id, version } = c.req.valid("param");
    const { db, now } = c.get("services");
    const image = await findReadableImage(db, projectId, id);
    if (!image) throw errors.notFound("image", id);
    const [detail] = await imageVersionDetails(db, image, now(), version);
    if (!detail) throw errors.notFound("image version", `${id} version ${version}`);
    return c.json(detail, 200);
  });
}
