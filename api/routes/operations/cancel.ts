import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { idSchema } from "../../../schemas/common.ts";
import { OperationSchema, TERMINAL_OPERATION_STATES } from "../../../schemas/operations.ts";
import { requireScope } from "../../auth.ts";
import { findOperation, toOperation, updateOperation } from "../../catalog/operations.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "post",
  path: "/v1/operations/{id}/cancel",
  operationId: "cancelOperation",
  tags: ["operations"],
  summary: "Cancel an operation: a pending one stops at once, a running one at its next step",
  security: bearerAuth,
  request: { params: z.object({ id: idSchema("operation") }) },
  responses: {
    200: jsonResponse(OperationSchema, "The operation after the request."),
    ...problemResponses(400, 401, 403, 404, 409),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const principal = requireScope(c, "write");
    const { id } = c.req.valid("param");
    const { db, operationEvents, now } = c.get("services");
    const row = await findOperation(db, id, principal.projectId);
    if (!row) throw errors.notFound("operation", id);
    if (TERMINAL_OPERATION_STATES.includes(row.state)) {
      throw errors.conflict("operation_done", `Operation ${id} already ended ${row.state}.`);
    }
    const updated = await updateOperation(
      db,
      operationEvents,
      id,
      row.state === "pending" ? { state: "cancelled", cancelRequested: true } : { cancelRequested: true },
      now(),
    );
    return c.json(toOperation(updated ?? row), 200);
  });
}
