import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { NameSchema } from "../../../schemas/common.ts";
import { ImageSchema } from "../../../schemas/images.ts";
import { requireProject } from "../../auth.ts";
import { resolveFamily } from "../../catalog/image-versions.ts";
import { findImage, hydrateImages } from "../../catalog/images.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "get",
  path: "/v1/image-families/{family}",
  operationId: "getImageFamily",
  tags: ["images"],
  summary: "The image a family names: the newest active one of it in the project",
  description:
    "As GCE resolves image families: of the project's images naming the family, the one whose current version is active and newest (deprecated versions are skipped; when every image's current version is deprecated, the newest of those). VM groups naming the family follow this answer.",
  security: bearerAuth,
  request: { params: z.object({ family: NameSchema }) },
  responses: {
    200: jsonResponse(ImageSchema, "The family's image now."),
    ...problemResponses(400, 401, 403, 404),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "read");
    const { family } = c.req.valid("param");
    const { db, now } = c.get("services");
    const id = await resolveFamily(db, projectId, family, now());
    const row = id ? await findImage(db, projectId, id) : undefined;
    if (!row) throw errors.notFound("image family", family);
    const [image] = await hydrateImages(db, [row], projectId);
    return c.json(image as NonNullable<typeof image>, 200);
  });
}
