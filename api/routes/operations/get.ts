import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { idSchema } from "../../../schemas/common.ts";
import { OperationSchema, WaitDurationSchema } from "../../../schemas/operations.ts";
import { requireScope } from "../../auth.ts";
import { findOperation, toOperation, waitForOperationChange } from "../../catalog/operations.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "get",
  path: "/v1/operations/{id}",
  operationId: "getOperation",
  tags: ["operations"],
  summary: "Get an operation; with ?wait=30s, answer as soon as it changes (long-poll)",
  security: bearerAuth,
  request: {
    params: z.object({ id: idSchema("operation") }),
    query: z.object({
      wait: WaitDurationSchema.optional().openapi({
        type: "string",
        description: "Return as soon as the operation changes, or after this long (at most 60s).",
        example: "30s",
      }),
    }),
  },
  responses: {
    200: jsonResponse(OperationSchema, "The operation."),
    ...problemResponses(400, 401, 403, 404, 429),
  },
});

/** Long-polls one token may hold at once: each holds a connection and a waiter here. */
export const MAX_WAITS_PER_TOKEN = 16;

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const principal = requireScope(c, "read");
    const { id } = c.req.valid("param");
    const { wait } = c.req.valid("query");
    const { db, operationEvents } = c.get("services");
    let row = await findOperation(db, id, principal.projectId);
    if (!row) throw errors.notFound("operation", id);
    if (wait) {
      const release = operationEvents.reserveWait(principal.tokenId, MAX_WAITS_PER_TOKEN);
      if (!release) {
        throw errors.tooManyRequests(
          "too_many_waits",
          `A token holds at most ${MAX_WAITS_PER_TOKEN} long-polls (?wait=) at once; wait for one to end, or ask without ?wait.`,
        );
      }
      try {
        row = await waitForOperationChange(db, operationEvents, row, wait, c.req.raw.signal);
      } finally {
        release();
      }
    }
    return c.json(toOperation(row), 200);
  });
}
