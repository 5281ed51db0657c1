// Internal names as the control plane resolves them, kept for a few seconds: a guest resolving
// a name for every connection it makes must not cost a control-plane request each time, and
// concurrent lookups of one name share one request. Failures are not kept.
import { canonicalName, type InternalNameAnswer } from "../../schemas/internal-names.ts";

export type InternalNameResolver = (
  instanceId: string,
  name: string,
) => Promise<InternalNameAnswer | undefined>;

interface Entry {
  answer: Promise<InternalNameAnswer | undefined>;
  expiresAt: number;
}

export class InternalNameCache {
  readonly #resolve: InternalNameResolver;
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;
  readonly #entries = new Map<string, Entry>();

  constructor(
    resolve: InternalNameResolver,
    options: { ttlMs: number; maxEntries?: number; now?: () => number },
  ) {
    this.#resolve = resolve;
    this.#ttlMs = options.ttlMs;
    this.#maxEntries = options.maxEntries ?? 4096;
    this.#now = options.now ?? Date.now;
  }

  /** The answer for `name` asked by `instanceId` (names are per project: the key includes the asker). */
  lookup(instanceId: string, name: string): Promise<InternalNameAnswer | undefined> {
    const canonical = canonicalName(name);
    const key = `${instanceId} ${canonical}`;
    const now = this.#now();
    const cached = this.#entries.get(key);
    if (cached && cached.expiresAt > now) return cached.answer;
    this.#entries.delete(key);
    const answer = this.#resolve(instanceId, canonical);
    const entry: Entry = { answer, expiresAt: now + this.#ttlMs };
    this.#entries.set(key, entry);
    answer.catch(() => {
      if (this.#entries.get(key) === entry) this.#entries.delete(key);
    });
    // The oldest entries go first (a Map iterates in insertion order).
    for (const oldest of this.#entries.keys()) {
      if (this.#entries.size <= this.#maxEntries) break;
      this.#entries.delete(oldest);
    }
    return answer;
  }
}
