// A host agent registers with a manager credential; only the control plane, which issued it,
// can say whether it is one of this datacenter's. Agents register again after every manager
// restart, all at once: each credential is checked once a minute at most.
import { createHash } from "node:crypto";

const CHECK_TTL_MS = 60_000;

export class CredentialChecks {
  readonly #cache = new Map<string, { valid: boolean; until: number }>();
  readonly #check: (credential: string) => Promise<boolean>;
  constructor(check: (credential: string) => Promise<boolean>) {
    this.#check = check;
  }

  async check(credential: string): Promise<boolean> {
    // Kept by hash: the manager holds no agent's secret in memory longer than a request.
    const key = createHash("sha256").update(credential).digest("hex");
    const cached = this.#cache.get(key);
    if (cached && cached.until > Date.now()) return cached.valid;
    const valid = await this.#check(credential);
    this.#cache.set(key, { valid, until: Date.now() + CHECK_TTL_MS });
    return valid;
  }
}
