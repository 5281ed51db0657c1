// Data dirs hold secrets (catalog, signing-key secret, tokens, images of every project): only
// the user running the service may read them. Shared by the control plane, the regional
// manager and `globalvm up`, which is why it lives outside all three.
import { chmodSync, lstatSync, mkdirSync, readdirSync, type Stats } from "node:fs";
import { join } from "node:path";
import { ConfigurationError } from "./configuration-error.ts";

/** No access for group and others on anything this process creates from now on. */
export const PRIVATE_UMASK = 0o077;

/**
 * Why `stats` (of the data dir at `path`) may not be trusted, or undefined when it may: a dir
 * another user can write to (or owns) lets them swap files under the service, so it is refused
 * rather than repaired. A dir that is only too readable is not a reason: it gets tightened.
 */
export function unsafeDirReason(
  path: string,
  stats: Pick<Stats, "mode" | "uid">,
  uid: number,
): string | undefined {
  if (stats.uid !== uid) {
    return `data dir ${path} is owned by uid ${stats.uid}, not by this user (uid ${uid}): give it to this user (chown -R ${uid} ${path}) or use another dir`;
  }
  if ((stats.mode & 0o022) !== 0) {
    const mode = (stats.mode & 0o777).toString(8).padStart(4, "0");
    return `data dir ${path} is writable by other users (mode ${mode}): run chmod 700 ${path}, or use another dir`;
  }
  return undefined;
}

/**
 * Makes `path` this user's private data dir: created 0700 if missing, refused (with the fix)
 * when other users can write to it, tightened to 0700 when it is only too readable (which
 * closes everything under it: its entries are not walked, a store may hold millions). Sets the
 * process umask to 077 so that files created afterwards are private whatever the umask the
 * service was started with.
 */
export function preparePrivateDir(path: string): void {
  process.umask(PRIVATE_UMASK);
  mkdirSync(path, { recursive: true, mode: 0o700 });
  const stats = lstatSync(path);
  if (!stats.isDirectory()) throw new ConfigurationError(`data dir ${path} is not a directory`);
  const uid = process.getuid?.();
  if (uid !== undefined) {
    const reason = unsafeDirReason(path, stats, uid);
    if (reason) throw new ConfigurationError(reason);
  }
  if ((stats.mode & 0o077) !== 0) chmodSync(path, 0o700);
}

/**
 * Takes group and other permissions off everything under `path` this user owns (symlinks are
 * not followed): for files a library creates with its own modes, whatever the umask (PGlite
 * copies its initial database files in 0666).
 */
export function tightenTree(path: string): void {
  const stats = lstatSync(path);
  if (stats.isSymbolicLink()) return;
  const owned = stats.uid === (process.getuid?.() ?? stats.uid);
  if (owned && (stats.mode & 0o077) !== 0) chmodSync(path, stats.mode & 0o700);
  if (!stats.isDirectory()) return;
  for (const entry of readdirSync(path)) tightenTree(join(path, entry));
}
