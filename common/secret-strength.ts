// Secrets an operator chooses (the bootstrap admin token, the signing-key secret) are checked
// for strength before use: they are the keys to everything, and a guessable one is as good as
// none. Generated secrets (32 random bytes) pass with a wide margin.
import { ConfigurationError } from "./configuration-error.ts";

export const GENERATE_SECRET_HINT = "generate one with: openssl rand -base64 32";
export const MIN_SECRET_LENGTH = 32;
/** Estimated from the characters' frequencies: 32 random bytes in base64 or hex score 190+. */
export const MIN_SECRET_BITS = 128;

/** Why `secret` is too weak to be used, or undefined when it is strong enough. */
export function weakSecretReason(secret: string): string | undefined {
  if (secret.length < MIN_SECRET_LENGTH)
    return `it is ${secret.length} characters long, at least ${MIN_SECRET_LENGTH} are needed`;
  const run = patternRun(secret);
  if (run) return `it contains the pattern '${run}'`;
  const unit = repeatedUnit(secret);
  if (unit) return `it is '${unit}' repeated`;
  const bits = estimatedBits(secret);
  if (bits < MIN_SECRET_BITS)
    return `it has about ${Math.floor(bits)} bits of entropy, at least ${MIN_SECRET_BITS} are needed`;
  return undefined;
}

/** Throws a message naming `name`, the reason and how to generate a good secret. */
export function assertStrongSecret(name: string, secret: string): void {
  const reason = weakSecretReason(secret);
  if (reason) throw new ConfigurationError(`${name} is too weak: ${reason}; ${GENERATE_SECRET_HINT}`);
}

/**
 * Long enough that random secrets almost never hold one (1 in 10,000 of `openssl rand -hex 32`,
 * none in 200,000 of -base64 32), short enough to catch what people type ("aaaaaa", "123456").
 */
const PATTERN_RUN = 6;

/** The first run of PATTERN_RUN characters that repeat one or count up or down by one ("aaaaaa", "123456", "fedcba"). */
function patternRun(secret: string): string | undefined {
  for (let start = 0; start + PATTERN_RUN <= secret.length; start++) {
    const step = secret.charCodeAt(start + 1) - secret.charCodeAt(start);
    if (Math.abs(step) > 1) continue;
    let end = start + 2;
    while (end < start + PATTERN_RUN && secret.charCodeAt(end) - secret.charCodeAt(end - 1) === step) end++;
    if (end === start + PATTERN_RUN) return secret.slice(start, end);
  }
  return undefined;
}

/** The shortest unit the whole secret repeats ("abcabcabc" → "abc"), if any. */
function repeatedUnit(secret: string): string | undefined {
  for (let size = 1; size <= secret.length / 2; size++) {
    if (secret.length % size !== 0) continue;
    const unit = secret.slice(0, size);
    if (unit.repeat(secret.length / size) === secret) return unit;
  }
  return undefined;
}

/** Length × the Shannon entropy of the character frequencies: low for words and few symbols. */
function estimatedBits(secret: string): number {
  const counts = new Map<string, number>();
  for (const char of secret) counts.set(char, (counts.get(char) ?? 0) + 1);
  let perChar = 0;
  for (const count of counts.values()) {
    const p = count / secret.length;
    perChar -= p * Math.log2(p);
  }
  return perChar * secret.length;
}
