import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { idSchema } from "../../../schemas/common.ts";
import { UploadTicketSchema } from "../../../schemas/managers.ts";
import { requireProject } from "../../auth.ts";
import { findImage } from "../../catalog/images.ts";
import { issueUploadTicket, noManagerError } from "../../catalog/uploads.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "post",
  path: "/v1/images/{id}/uploads",
  operationId: "createImageUpload",
  tags: ["images"],
  summary: "Start an upload of the image's next version: the origin manager's URL and an upload token",
  security: bearerAuth,
  request: { params: z.object({ id: idSchema("image") }) },
  responses: {
    201: jsonResponse(UploadTicketSchema, "Where to send the bytes."),
    ...problemResponses(400, 401, 403, 404, 409),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "write");
    const { id } = c.req.valid("param");
    const { db, transferTokens, now } = c.get("services");
    const image = await findImage(db, projectId, id);
    if (!image) throw errors.notFound("image", id);
    const ticket = await issueUploadTicket(db, transferTokens, image, now());
    if (!ticket) throw noManagerError(image.originRegion);
    return c.json(ticket, 201);
  });
}
