/** Errors the store raises, each with a stable code the HTTP layer maps to a problem+json. */
export type StoreErrorCode =
  | "CHUNK_DIGEST_MISMATCH"
  | "CHUNK_NOT_REFERENCED"
  | "CHUNK_MISSING"
  | "DISK_FULL"
  | "IMAGE_DIGEST_MISMATCH"
  | "IMAGE_FORMAT_REFUSED"
  | "IMAGE_TOO_LARGE"
  | "MANIFEST_DIGEST_MISMATCH"
  | "MANIFEST_TOO_LARGE"
  | "TOO_MANY_CHUNKS"
  | "INVALID_IDENTIFIER"
  | "VERSION_CONFLICT"
  | "VERSION_NOT_FOUND"
  | "VERSION_INCOMPLETE";

export class StoreError extends Error {
  readonly code: StoreErrorCode;
  constructor(code: StoreErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StoreError";
    this.code = code;
  }
}

/** Turns ENOSPC/EDQUOT into a DISK_FULL StoreError that says where; other errors pass through. */
export function asStoreError(error: unknown, where: string): unknown {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === "ENOSPC" || code === "EDQUOT") {
    return new StoreError("DISK_FULL", `disk full while writing ${where}`, { cause: error });
  }
  return error;
}
