import { lstatSync, readdirSync } from "node:fs";
import { join } from "node:path";

/**
 * Every entry under `dir` (itself included) whose mode is not private: files must be 0600,
 * dirs 0700, anything else (sockets) without group or other bits. `except` names paths a
 * test put there itself.
 */
export function loosePermissions(dir: string, except: readonly string[] = []): string[] {
  const loose: string[] = [];
  const walk = (path: string) => {
    if (except.includes(path)) return;
    const stats = lstatSync(path);
    const mode = stats.mode & 0o777;
    const expected = stats.isDirectory() ? 0o700 : stats.isFile() ? 0o600 : mode & 0o700;
    if (mode !== expected) loose.push(`${path} ${mode.toString(8)}`);
    if (stats.isDirectory()) for (const entry of readdirSync(path)) walk(join(path, entry));
  };
  walk(dir);
  return loose;
}
