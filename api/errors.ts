// Typed errors that every route may throw; onError turns them into RFC 9457 problem+json.
import { validationDetail } from "../common/http/field-errors.ts";
import { type FieldError, ProblemError, problemDocument } from "../common/http/problem.ts";
import type { Problem } from "../schemas/common.ts";

export type { FieldError } from "../common/http/problem.ts";

export class ApiError extends ProblemError {
  readonly quota: Problem["quota"];
  constructor(status: number, code: string, detail: string, errors?: FieldError[], quota?: Problem["quota"]) {
    super(status, code, detail, errors);
    this.quota = quota;
  }
}

export function problemOf(error: ApiError, instance?: string): Problem {
  return problemDocument(error, {
    ...(instance ? { instance } : {}),
    ...(error.quota ? { quota: error.quota } : {}),
  });
}

export const errors = {
  validation: (errors: FieldError[], detail?: string) =>
    new ApiError(400, "validation_failed", detail ?? validationDetail(errors), errors),
  malformedJson: (detail: string) => new ApiError(400, "malformed_json", detail),
  invalidPageToken: () =>
    new ApiError(400, "invalid_page_token", "page_token is not a token this API returned", [
      { path: "page_token", message: "unknown or corrupt page token" },
    ]),
  unauthenticated: (detail = "Send Authorization: Bearer <token>.") =>
    new ApiError(401, "unauthenticated", detail),
  forbidden: (detail: string) => new ApiError(403, "forbidden", detail),
  notFound: (kind: string, id: string) => new ApiError(404, "not_found", `${kind} ${id} does not exist`),
  conflict: (code: string, detail: string) => new ApiError(409, code, detail),
  unprocessable: (code: string, detail: string, errors?: FieldError[]) =>
    new ApiError(422, code, detail, errors),
  /** As GCE answers: 403, naming the quota, what the project uses of it and its limit. */
  quotaExceeded: (quota: NonNullable<Problem["quota"]>) =>
    new ApiError(
      403,
      "quota_exceeded",
      `Quota ${quota.name} exceeded: the project uses ${quota.usage} of ${quota.limit} and this request needs ${quota.requested} more; an admin can raise it (PATCH /v1/projects/{id}).`,
      undefined,
      quota,
    ),
  tooManyRequests: (code: string, detail: string) => new ApiError(429, code, detail),
  tooLarge: (limit: number) =>
    new ApiError(413, "body_too_large", `Request bodies are limited to ${limit} bytes.`),
};
