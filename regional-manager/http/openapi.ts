// What every concern of the manager (transfer, replicas, instances, metadata) builds its
// routes with: an OpenAPIHono that answers invalid input and refusals as problem documents,
// the documented problem answers, and the two kinds of token the control plane signs for it.
import { OpenAPIHono, z } from "@hono/zod-openapi";
import { requestFieldErrors, validationDetail } from "../../common/http/field-errors.ts";
import { ProblemError, problemContent, problemResponse } from "../../common/http/problem.ts";
import { problemOf } from "./problems.ts";

export type Log = (line: string) => void;

export function managerRoutes(log: Log = () => {}): OpenAPIHono {
  const app = new OpenAPIHono({
    defaultHook: (result) => {
      if (result.success) return;
      const errors = requestFieldErrors(result.error, result.target);
      throw new ProblemError(400, "validation_failed", validationDetail(errors), errors);
    },
  });
  app.onError((error, c) => {
    const problem = problemOf(error, c.req.path);
    if (problem.status >= 500) log(`[WARN] ${c.req.method} ${c.req.path}: ${error}`);
    return problemResponse(problem);
  });
  return app;
}

const DESCRIPTIONS: Record<number, string> = {
  400: "A parameter, header or body is invalid; `errors` names the fields.",
  401: "No token, one this manager cannot verify (`unauthenticated`), or an expired one (`token_expired`).",
  403: "A valid token for another image, version, instance, action or datacenter.",
  404: "Not held or not known here.",
  409: "Conflicts with the state here (a version in use or still incomplete).",
  413: "Over one of this manager's limits (image size, chunk count, manifest bytes).",
  422: "Well-formed but refused (a chunk or image that does not match its digest, a refused format, no capacity).",
  502: "A peer manager failed the pull.",
  507: "The store's disk is full.",
};

export function problemResponses<const S extends number>(...statuses: S[]) {
  return Object.fromEntries(
    statuses.map((status) => [
      status,
      { description: DESCRIPTIONS[status] ?? "Error", content: problemContent() },
    ]),
  ) as { [K in S]: { description: string; content: ReturnType<typeof problemContent> } };
}

/** Transfer tokens: one image version, one datacenter, one action (upload, read, replicate, drop). */
export const transferTokenSecurity = [{ transferToken: [] as string[] }];
/** Instance tokens: one instance in one datacenter. */
export const instanceTokenSecurity = [{ instanceToken: [] as string[] }];
/** Network tokens: one network in one datacenter. */
export const networkTokenSecurity = [{ networkToken: [] as string[] }];

export function registerTokenSchemes(app: OpenAPIHono): void {
  app.openAPIRegistry.registerComponent("securitySchemes", "transferToken", {
    type: "http",
    scheme: "bearer",
    bearerFormat: "JWT",
    description: "Signed by the control plane for one image version, datacenter and action.",
  });
  app.openAPIRegistry.registerComponent("securitySchemes", "instanceToken", {
    type: "http",
    scheme: "bearer",
    bearerFormat: "JWT",
    description: "Signed by the control plane for one instance in this datacenter.",
  });
  app.openAPIRegistry.registerComponent("securitySchemes", "networkToken", {
    type: "http",
    scheme: "bearer",
    bearerFormat: "JWT",
    description: "Signed by the control plane for one network in this datacenter.",
  });
}

export function binaryContent(description: string) {
  return {
    description,
    content: { "application/octet-stream": { schema: { type: "string" as const, format: "binary" } } },
  };
}

/** The path of every route about one image version: `{imageId}/versions/{version}`. */
export const ImageVersionParams = z.object({
  imageId: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, "an image id is 1-128 letters, digits, '_', '.' or '-'")
    .openapi({ param: { name: "imageId", in: "path" }, example: "img_01hz" }),
  version: z.coerce
    .number()
    .int()
    .min(1)
    .openapi({ param: { name: "version", in: "path" }, example: 1 }),
});
