// The secrets `globalvm up` keeps in its data dir so that a restart resumes with the same
// tokens: the admin token it generated, the default project's token, and each regional
// manager's credential. Written atomically, mode 0600.
import { chmodSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface UpSecrets {
  /** Only when `up` generated it (a GLOBALVM_ADMIN_TOKEN from the environment is not stored). */
  admin_token?: string;
  project?: { id: string; token: string };
  /** datacenter name → manager credential */
  managers: Record<string, string>;
}

export const SECRETS_FILE = "secrets.json";

export function readUpSecrets(dataDir: string): UpSecrets {
  const path = join(dataDir, SECRETS_FILE);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { managers: {} };
    throw error;
  }
  const parsed = JSON.parse(text) as Partial<UpSecrets>;
  return { ...parsed, managers: parsed.managers ?? {} };
}

export function writeUpSecrets(dataDir: string, secrets: UpSecrets): void {
  const path = join(dataDir, SECRETS_FILE);
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600 });
  // The mode given to writeFileSync is filtered by the umask; make sure it is 0600.
  chmodSync(temporary, 0o600);
  renameSync(temporary, path);
}
