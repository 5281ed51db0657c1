// The rule that no token or credential reaches a log line, checked on real logs: a stack records
// every secret it issued, sent or was given, and when it stops it reads its processes' log files
// for any of them, and for anything shaped like a token (gvm_…) or a JWT it did not record.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** Secrets worth looking for, by what they are (the label is printed, never the secret). */
export class SecretRecord {
  readonly #secrets = new Map<string, string>();

  add(label: string, secret: string | undefined | null): void {
    // Short values (a scope, "true") would match by chance; real secrets are long.
    if (typeof secret === "string" && secret.length >= 16 && !this.#secrets.has(secret))
      this.#secrets.set(secret, label);
  }

  /** Every `secret` and `token` string in an API answer (credentials, tokens, upload tickets). */
  addFromAnswer(label: string, body: unknown, depth = 0): void {
    if (depth > 6 || body === null || typeof body !== "object") return;
    for (const [key, value] of Object.entries(body)) {
      if (typeof value === "string" && /^(secret|token|credential)$/i.test(key))
        this.add(`${label} ${key}`, value);
      else this.addFromAnswer(label, value, depth + 1);
    }
  }

  /** Values of environment variables that name a secret. */
  addFromEnv(env: Record<string, string | undefined>): void {
    for (const [name, value] of Object.entries(env))
      if (/TOKEN|SECRET|CREDENTIAL|PASSWORD/.test(name)) this.add(name, value);
  }

  entries(): [secret: string, label: string][] {
    return [...this.#secrets];
  }
}

const SHAPES: [string, RegExp][] = [
  ["a globalvm token (gvm_…)", /gvm_[A-Za-z0-9_-]{32,}/],
  ["a JWT", /eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/],
];

export interface LogLeak {
  file: string;
  line: number;
  what: string;
}

/** Where any recorded secret, or anything shaped like a token, appears in the `.log` files under `dir`. */
export function findSecretsInLogs(dir: string, secrets: SecretRecord): LogLeak[] {
  const leaks: LogLeak[] = [];
  const known = secrets.entries();
  for (const name of readdirSync(dir).filter((n) => n.endsWith(".log"))) {
    const lines = readFileSync(join(dir, name), "utf8").split("\n");
    lines.forEach((text, index) => {
      for (const [secret, label] of known)
        if (text.includes(secret)) leaks.push({ file: name, line: index + 1, what: label });
      for (const [what, shape] of SHAPES)
        if (shape.test(text)) leaks.push({ file: name, line: index + 1, what });
    });
  }
  return leaks;
}

/** Throws, naming files, lines and what leaked (never the secret itself), if any log holds a secret. */
export function assertNoSecretsInLogs(dir: string, secrets: SecretRecord): void {
  const leaks = findSecretsInLogs(dir, secrets);
  if (leaks.length > 0) {
    throw new Error(
      `secrets in the logs of ${dir}:\n${leaks.map((l) => `  ${l.file}:${l.line}: ${l.what}`).join("\n")}`,
    );
  }
}
