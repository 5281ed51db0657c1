// Typed errors that every route may throw; onError turns them into RFC 9457 problem+json.
import type { Problem } from "../schemas/common.ts";

export interface FieldError {
  path: string;
  message: string;
}

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly errors: FieldError[] | undefined;
  readonly quota: Problem["quota"];
  constructor(status: number, code: string, detail: string, errors?: FieldError[], quota?: Problem["quota"]) {
    super(detail);
    this.status = status;
    this.code = code;
    this.errors = errors;
    this.quota = quota;
  }
}

const TITLES: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  409: "Conflict",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  422: "Unprocessable Content",
  429: "Too Many Requests",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

export function problemOf(error: ApiError, instance?: string): Problem {
  return {
    type: `https://globalvm.dev/problems/${error.code}`,
    title: TITLES[error.status] ?? "Error",
    status: error.status,
    code: error.code,
    detail: error.message,
    ...(instance ? { instance } : {}),
    ...(error.errors ? { errors: error.errors } : {}),
    ...(error.quota ? { quota: error.quota } : {}),
  };
}

export const errors = {
  validation: (errors: FieldError[], detail?: string) =>
    new ApiError(
      400,
      "validation_failed",
      detail ?? `Invalid request: ${errors.map((e) => `${e.path || "(body)"}: ${e.message}`).join("; ")}`,
      errors,
    ),
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
