// Shared pieces of route definitions: error responses and security.
import { ProblemSchema } from "../schemas/common.ts";

const DESCRIPTIONS: Record<number, string> = {
  400: "The request is malformed or a field is invalid; `errors` names the fields.",
  401: "No token, or an unknown one.",
  403: "The token lacks the scope this call needs.",
  404: "No such object in this project.",
  409: "Conflicts with the current state (duplicate name, object in use, reused Idempotency-Key).",
  413: "The body is too large.",
  422: "Well-formed but refers to something that cannot be used (unknown region, image, group).",
  429: "Too many requests of this kind at once from this token; retry after the ones in flight end.",
};

export function problemResponses<const S extends number>(...statuses: S[]) {
  return Object.fromEntries(
    statuses.map((status) => [
      status,
      {
        description: DESCRIPTIONS[status] ?? "Error",
        content: { "application/problem+json": { schema: ProblemSchema } },
      },
    ]),
  ) as {
    [K in S]: {
      description: string;
      content: { "application/problem+json": { schema: typeof ProblemSchema } };
    };
  };
}

export const bearerAuth = [{ bearer: [] as string[] }];

export function jsonBody<T>(schema: T, description?: string) {
  return { required: true, description, content: { "application/json": { schema } } };
}

export function jsonResponse<T>(schema: T, description: string) {
  return { description, content: { "application/json": { schema } } };
}
