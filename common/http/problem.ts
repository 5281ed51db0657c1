// RFC 9457 problem documents as the control plane and every regional manager answer them: a
// stable lowercase `code` to branch on, a `detail` for people, and `errors[]` naming each
// invalid field. One shape for both services, so a client reads any refusal the same way.
import { type Problem, ProblemSchema } from "../../schemas/common.ts";
import type { FieldError } from "./field-errors.ts";

export type { FieldError } from "./field-errors.ts";

const TITLES: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  409: "Conflict",
  411: "Length Required",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  422: "Unprocessable Content",
  429: "Too Many Requests",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  507: "Insufficient Storage",
};

/** A refusal a handler throws; the app's error handler answers it as its problem document. */
export class ProblemError extends Error {
  readonly status: number;
  readonly code: string;
  readonly errors: FieldError[] | undefined;
  constructor(status: number, code: string, detail: string, errors?: FieldError[]) {
    super(detail);
    this.status = status;
    this.code = code;
    this.errors = errors;
  }
}

export function problemDocument(
  error: Pick<ProblemError, "status" | "code" | "message" | "errors">,
  extras: { instance?: string; quota?: Problem["quota"] } = {},
): Problem {
  return {
    type: `https://globalvm.dev/problems/${error.code}`,
    title: TITLES[error.status] ?? "Error",
    status: error.status,
    code: error.code,
    detail: error.message,
    ...(extras.instance ? { instance: extras.instance } : {}),
    ...(error.errors ? { errors: error.errors } : {}),
    ...(extras.quota ? { quota: extras.quota } : {}),
  };
}

export function problemResponse(problem: Problem): Response {
  return new Response(JSON.stringify(problem), {
    status: problem.status,
    headers: { "content-type": "application/problem+json" },
  });
}

/** The OpenAPI description of a problem answer. */
export function problemContent() {
  return { "application/problem+json": { schema: ProblemSchema } };
}
