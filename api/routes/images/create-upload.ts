import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { idSchema } from "../../../schemas/common.ts";
import { CreateUploadSchema, UploadTicketSchema } from "../../../schemas/managers.ts";
import { requireProject } from "../../auth.ts";
import { findOwnImage } from "../../catalog/images.ts";
import { uploadAllowance } from "../../catalog/quotas.ts";
import { issueUploadTicket, noManagerError } from "../../catalog/uploads.ts";
import type { AppEnv } from "../../env.ts";
import { bearerAuth, jsonBody, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "post",
  path: "/v1/images/{id}/uploads",
  operationId: "createImageUpload",
  tags: ["images"],
  summary: "Start an upload of the image's next version: the origin manager's URL and an upload token",
  security: bearerAuth,
  description:
    "With `size`, a version the project's storage quota does not cover is refused (403 quota_exceeded) before any ticket is issued; the ticket allows that size, else what the quota leaves.",
  request: {
    params: z.object({ id: idSchema("image") }),
    body: { ...jsonBody(CreateUploadSchema), required: false },
  },
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
    const { size } = c.req.valid("json") ?? {};
    const image = await findOwnImage(db, projectId, id);
    const ticket = await issueUploadTicket(
      db,
      transferTokens,
      image,
      now(),
      await uploadAllowance(db, projectId, size),
    );
    if (!ticket) throw noManagerError(image.originRegion);
    return c.json(ticket, 201);
  });
}
