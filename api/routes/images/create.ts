import { createRoute, type OpenAPIHono, type z } from "@hono/zod-openapi";
import { CreateImageSchema, ImageSchema } from "../../../schemas/images.ts";
import { UploadTicketSchema } from "../../../schemas/managers.ts";
import { requireProject } from "../../auth.ts";
import { assertMembers, findImage, hydrateImages } from "../../catalog/images.ts";
import { assertWithinQuotas, storageLeft } from "../../catalog/quotas.ts";
import { assertRegionsExist } from "../../catalog/regions.ts";
import { images } from "../../catalog/schema.ts";
import { issueUploadTicket } from "../../catalog/uploads.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { withIdempotency } from "../../idempotency.ts";
import { newId } from "../../ids.ts";
import { bearerAuth, jsonBody, jsonResponse, problemResponses } from "../../openapi.ts";

const CreatedImageSchema = ImageSchema.extend({ upload: UploadTicketSchema.nullable() }).openapi(
  "CreatedImage",
);
type CreatedImage = z.infer<typeof CreatedImageSchema>;

export const route = createRoute({
  method: "post",
  path: "/v1/images",
  operationId: "createImage",
  tags: ["images"],
  summary: "Create an image record in its origin region",
  description:
    "Accepts an `Idempotency-Key` header: a retry with the same key and body returns the first result.",
  security: bearerAuth,
  request: { body: jsonBody(CreateImageSchema) },
  responses: {
    201: jsonResponse(
      CreatedImageSchema,
      "The new image, with where to upload its first version (null while no manager of the origin region is up).",
    ),
    ...problemResponses(400, 401, 403, 409, 413, 422),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const projectId = requireProject(c, "write");
    const body = c.req.valid("json");
    const { db, transferTokens, now } = c.get("services");
    const response = await withIdempotency(
      c,
      body,
      async () => {
        await assertRegionsExist(db, [
          { path: "origin_region", name: body.origin_region },
          ...body.replicate_to.map((name, i) => ({ path: `replicate_to[${i}]`, name })),
        ]);
        await assertMembers(db, projectId, body.members ?? []);
        const [row] = await db.transaction(async (tx) => {
          await assertWithinQuotas(tx, projectId, { images: 1 });
          return tx
            .insert(images)
            .values({
              id: newId("image"),
              projectId,
              name: body.name,
              format: body.format,
              originRegion: body.origin_region,
              labels: body.labels,
              replicateTo: body.replicate_to,
              family: body.family ?? null,
              members: body.members ?? [],
            })
            .onConflictDoNothing()
            .returning();
        });
        if (!row)
          throw errors.conflict(
            "already_exists",
            `An image named ${body.name} already exists in this project.`,
          );
        const [image] = await hydrateImages(db, [row], projectId);
        const upload = await issueUploadTicket(
          db,
          transferTokens,
          row,
          now(),
          await storageLeft(db, projectId),
        );
        return { status: 201 as const, body: { ...image, upload } as CreatedImage };
      },
      {
        strip: ({ upload, ...image }) => ({ ...image, upload: upload && { ...upload, token: undefined } }),
        // A replay gets a fresh ticket for the same version while that upload is still to be
        // made; once the image has moved on (or is gone), none: no token outlives its purpose.
        revive: async (stored) => {
          const { upload, ...image } = stored as CreatedImage;
          if (!upload) return { ...image, upload };
          const row = await findImage(db, projectId, image.id);
          const fresh = row
            ? await issueUploadTicket(db, transferTokens, row, now(), await storageLeft(db, projectId))
            : null;
          return { ...image, upload: fresh?.version === upload.version ? fresh : null };
        },
      },
    );
    return c.json(response.body, 201);
  });
}
