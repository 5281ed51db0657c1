import type { FileHandle } from "node:fs/promises";
import { readFully } from "../../common/files.ts";

/**
 * Fills `into` with a base image's bytes from `offset`, zeros past its end: what a chunk patch
 * is applied to (see common/image-format/chunk-patch.ts), the same on the source and the puller.
 */
export async function readBaseBytes(file: FileHandle, offset: number, into: Buffer): Promise<void> {
  const read = await readFully(file, into, into.length, offset);
  if (read < into.length) into.fill(0, read);
}
