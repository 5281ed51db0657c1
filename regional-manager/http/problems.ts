// A manager's refusals in the control plane's problem shape (common/http/problem.ts): the
// store's, the compute driver's and the token verifiers' errors each become a status and a
// lowercase code, and anything unknown a 500 that says nothing of the internals.
import { HTTPException } from "hono/http-exception";
import { TransferHttpError } from "../../common/binary-http.ts";
import { ProblemError, problemDocument } from "../../common/http/problem.ts";
import { ChunkRecordError } from "../../common/image-format/chunk-records.ts";
import { ManifestError } from "../../common/image-format/manifest.ts";
import { ControlPlaneTokenError, type TokenErrorCode } from "../../common/tokens/control-plane-jwt.ts";
import type { Problem } from "../../schemas/common.ts";
import { ComputeError, type ComputeErrorCode } from "../compute/index.ts";
import { StoreError, type StoreErrorCode } from "../store/errors.ts";
import { PullError } from "../transfer/pull.ts";

const STORE_STATUS: Record<StoreErrorCode, number> = {
  CHUNK_DIGEST_MISMATCH: 422,
  CHUNK_NOT_REFERENCED: 422,
  CHUNK_MISSING: 409,
  DISK_FULL: 507,
  IMAGE_DIGEST_MISMATCH: 422,
  IMAGE_FORMAT_REFUSED: 422,
  IMAGE_TOO_LARGE: 413,
  MANIFEST_DIGEST_MISMATCH: 422,
  MANIFEST_TOO_LARGE: 413,
  TOO_MANY_CHUNKS: 413,
  INVALID_IDENTIFIER: 400,
  VERSION_CONFLICT: 409,
  VERSION_NOT_FOUND: 404,
  VERSION_INCOMPLETE: 409,
};

/*
 * As the control plane answers: a token that is missing or not one of ours is
 * `unauthenticated`, one for something else is `forbidden` (the detail says what it is for);
 * an expired one has its own code, since the caller's remedy is a fresh token.
 */
const TOKEN_PROBLEM: Record<TokenErrorCode, [number, string]> = {
  TOKEN_MISSING: [401, "unauthenticated"],
  TOKEN_INVALID: [401, "unauthenticated"],
  TOKEN_EXPIRED: [401, "token_expired"],
  TOKEN_WRONG_IMAGE: [403, "forbidden"],
  TOKEN_WRONG_INSTANCE: [403, "forbidden"],
  TOKEN_WRONG_NETWORK: [403, "forbidden"],
  TOKEN_WRONG_DATACENTER: [403, "forbidden"],
  TOKEN_WRONG_ACTION: [403, "forbidden"],
};

const COMPUTE_PROBLEM: Record<ComputeErrorCode, [number, string]> = {
  "not-found": [404, "not_found"],
  "invalid-argument": [400, "validation_failed"],
  "capacity-exceeded": [422, "capacity_exceeded"],
  "failed-precondition": [409, "failed_precondition"],
  internal: [500, "internal"],
};

/** The problem `error` is answered with; `internal` (500) for anything not a known refusal. */
export function problemOf(error: unknown, instance?: string): Problem {
  return problemDocument(asProblemError(error), instance ? { instance } : {});
}

export function asProblemError(error: unknown): ProblemError {
  if (error instanceof ProblemError) return error;
  // Hono's own refusals: a JSON body that does not parse, mostly.
  if (error instanceof HTTPException) {
    return new ProblemError(
      error.status,
      error.status === 400 ? "malformed_json" : "http_error",
      error.message,
    );
  }
  if (error instanceof ControlPlaneTokenError) {
    const [status, code] = TOKEN_PROBLEM[error.code];
    return new ProblemError(status, code, error.message);
  }
  if (error instanceof StoreError) {
    return new ProblemError(STORE_STATUS[error.code], error.code.toLowerCase(), error.message);
  }
  if (error instanceof ManifestError) {
    return new ProblemError(400, "invalid_manifest", error.message, [
      { path: error.field, message: error.message },
    ]);
  }
  if (error instanceof ChunkRecordError) return new ProblemError(400, "invalid_chunk_stream", error.message);
  if (error instanceof ComputeError) {
    const [status, code] = COMPUTE_PROBLEM[error.code];
    const fields = error.field ? [{ path: error.field, message: error.message }] : undefined;
    return new ProblemError(status, code, error.message, fields);
  }
  // A peer failed us: a source answered with a problem, or a pull gave up on every source.
  if (error instanceof TransferHttpError)
    return new ProblemError(502, error.code.toLowerCase(), error.message);
  if (error instanceof PullError) return new ProblemError(502, "pull_failed", error.message);
  return new ProblemError(500, "internal", "the regional manager failed to handle the request");
}

/** A 400 naming one field, as the control plane's validation answers do. */
export function invalidField(path: string, message: string): ProblemError {
  return new ProblemError(400, "validation_failed", `${path}: ${message}`, [{ path, message }]);
}
