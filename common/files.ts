// The few file operations the store's reads and its durability rest on.
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { type FileHandle, open, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";

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

/** Writes `length` bytes of `buffer` from `from` at `position`, however many writes it takes. */
export async function writeFully(
  file: FileHandle,
  buffer: Buffer,
  from: number,
  length: number,
  position: number,
): Promise<void> {
  let done = 0;
  while (done < length) {
    done += (await file.write(buffer, from + done, length - done, position + done)).bytesWritten;
  }
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

/**
 * Replaces a file so that a crash leaves the old content or the new, never half of it, and
 * the new one survives once this returns: temporary file fsynced, renamed over, directory
 * fsynced (without that the rename itself may be lost).
 */
export async function replaceFileDurably(path: string, data: string | Buffer): Promise<void> {
  const temporary = `${path}.tmp`;
  try {
    await writeFileDurably(temporary, data);
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
  await syncDirectory(dirname(path));
}

/** replaceFileDurably for callers that cannot wait (a state change handled synchronously). */
export function replaceFileDurablySync(path: string, data: string | Buffer): void {
  const temporary = `${path}.tmp`;
  try {
    const file = openSync(temporary, "w");
    try {
      const bytes = typeof data === "string" ? Buffer.from(data) : data;
      let done = 0;
      while (done < bytes.length) done += writeSync(file, bytes, done, bytes.length - done);
      fsyncSync(file);
    } finally {
      closeSync(file);
    }
    renameSync(temporary, path);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error;
  }
  const dir = openSync(dirname(path), "r");
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}
