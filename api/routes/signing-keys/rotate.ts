import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { RotateSigningKeySchema, SigningKeyRotationSchema } from "../../../schemas/managers.ts";
import { requireScope } from "../../auth.ts";
import type { AppEnv } from "../../env.ts";
import { bearerAuth, jsonBody, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "post",
  path: "/v1/signing-keys",
  operationId: "rotateSigningKey",
  tags: ["admin"],
  summary: "Rotate the key that signs transfer and instance tokens (admin)",
  description:
    "Adds a new key to the JWKS; it signs from `signs_from` on, in every control plane on this catalog within seconds. The key it replaces keeps verifying until every token it signed has expired, then leaves the JWKS.",
  security: bearerAuth,
  request: { body: jsonBody(RotateSigningKeySchema) },
  responses: {
    201: jsonResponse(SigningKeyRotationSchema, "The new key, and until when the one it replaces verifies."),
    ...problemResponses(400, 401, 403),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    requireScope(c, "admin");
    const { signs_after_seconds } = c.req.valid("json");
    const { signingKeys, now } = c.get("services");
    const { key, previous } = await signingKeys.rotate(
      new Date(now().getTime() + signs_after_seconds * 1000),
    );
    return c.json(
      {
        kid: key.kid,
        algorithm: key.algorithm,
        public_jwk: key.publicJwk as Record<string, unknown>,
        signs_from: key.signsFrom.toISOString(),
        previous: previous
          ? { kid: previous.kid, verifies_until: previous.verifiesUntil.toISOString() }
          : null,
      },
      201,
    );
  });
}
