import { TransferHttpError } from "../../common/binary-http.ts";
import { ChunkRecordError } from "../../common/image-format/chunk-records.ts";
import { ManifestError } from "../../common/image-format/manifest.ts";
import { TransferTokenError } from "../../common/tokens/transfer-token.ts";
import { StoreError, type StoreErrorCode } from "../store/errors.ts";

/** RFC 9457 problem details with a stable `code` (and the offending `field` for validation). */
export interface Problem {
  type: string;
  title: string;
  status: number;
  code: string;
  detail: string;
  field?: string;
}

const STORE_STATUS: Record<StoreErrorCode, number> = {
  CHUNK_DIGEST_MISMATCH: 422,
  CHUNK_NOT_REFERENCED: 422,
  CHUNK_MISSING: 409,
  DISK_FULL: 507,
  IMAGE_DIGEST_MISMATCH: 422,
  IMAGE_FORMAT_REFUSED: 422,
  IMAGE_TOO_LARGE: 413,
  MANIFEST_TOO_LARGE: 413,
  TOO_MANY_CHUNKS: 413,
  INVALID_IDENTIFIER: 400,
  VERSION_CONFLICT: 409,
  VERSION_NOT_FOUND: 404,
  VERSION_INCOMPLETE: 409,
};

export function problem(status: number, code: string, detail: string, field?: string): Problem {
  return {
    type: `https://globalvm.dev/problems/${code.toLowerCase().replaceAll("_", "-")}`,
    title: code.replaceAll("_", " ").toLowerCase(),
    status,
    code,
    detail,
    ...(field ? { field } : {}),
  };
}

/** Maps known errors to problems; anything else is a 500 that does not leak internals. */
export function problemFromError(error: unknown): Problem {
  if (error instanceof TransferTokenError) {
    return problem(
      error.code === "TOKEN_MISSING" || error.code === "TOKEN_INVALID" || error.code === "TOKEN_EXPIRED"
        ? 401
        : 403,
      error.code,
      error.message,
    );
  }
  if (error instanceof StoreError) return problem(STORE_STATUS[error.code], error.code, error.message);
  if (error instanceof ManifestError) return problem(400, error.code, error.message, error.field);
  if (error instanceof ChunkRecordError) return problem(400, error.code, error.message);
  // Failures of a peer (pull.ts's PullError, or a problem a source answered with).
  if (error instanceof TransferHttpError) return problem(502, error.code, error.message);
  if (error instanceof Error && (error as { code?: unknown }).code === "PULL_FAILED") {
    return problem(502, "PULL_FAILED", error.message);
  }
  return problem(500, "INTERNAL", "the regional manager failed to handle the request");
}

export function problemResponse(p: Problem): Response {
  return new Response(JSON.stringify(p), {
    status: p.status,
    headers: { "content-type": "application/problem+json" },
  });
}
