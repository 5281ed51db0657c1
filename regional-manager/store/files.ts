// The few file operations the store's reads and its durability rest on.
import { type FileHandle, open } from "node:fs/promises";

/**
 * Reads `length` bytes at `position` into the start of `buffer`, however many reads it takes;
 * returns how many there were (fewer only when the file ends first).
 */
export async function readFully(
  file: FileHandle,
  buffer: Buffer,
  length: number,
  position: number,
): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await file.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/** Writes the whole file and fsyncs it before returning. */
export async function writeFileDurably(path: string, data: string | Buffer): Promise<void> {
  const file = await open(path, "w");
  try {
    await file.writeFile(data);
    await file.sync();
  } finally {
    await file.close();
  }
}

/** Makes the entries of a directory (a rename into it) durable. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
