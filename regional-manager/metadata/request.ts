// Query parameters of a metadata GET, and the long-poll decision. As on GCE:
// `wait_for_change=true` holds the request until the content at the path changes; `last_etag`
// is the ETag the client last saw (if the content already differs from it, the answer is
// immediate); `timeout_sec` bounds the wait, after which the current content is returned.
import type { RenderOptions } from "./document.ts";

export interface WaitOptions {
  waitForChange: boolean;
  lastEtag: string | undefined;
  timeoutMs: number;
}

export interface MetadataQuery {
  render: RenderOptions;
  wait: WaitOptions;
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: string };

const BOOLEAN_VALUES: Record<string, boolean> = { true: true, false: false, "1": true, "0": false };

function parseBoolean(params: URLSearchParams, name: string): ParseResult<boolean> {
  const raw = params.get(name);
  if (raw === null) return { ok: true, value: false };
  const value = BOOLEAN_VALUES[raw.toLowerCase()];
  if (value === undefined)
    return { ok: false, error: `${name} must be true or false, got ${JSON.stringify(raw)}` };
  return { ok: true, value };
}

/** maxWaitMs caps timeout_sec and is the wait when no timeout_sec is given. */
export function parseMetadataQuery(params: URLSearchParams, maxWaitMs: number): ParseResult<MetadataQuery> {
  const recursive = parseBoolean(params, "recursive");
  if (!recursive.ok) return recursive;
  const waitForChange = parseBoolean(params, "wait_for_change");
  if (!waitForChange.ok) return waitForChange;

  const altRaw = params.get("alt");
  if (altRaw !== null && altRaw !== "json" && altRaw !== "text") {
    return { ok: false, error: `alt must be json or text, got ${JSON.stringify(altRaw)}` };
  }
  // GCE answers recursive requests in JSON unless asked otherwise, and single values as text.
  const alt = altRaw ?? (recursive.value ? "json" : "text");

  let timeoutMs = maxWaitMs;
  const timeoutRaw = params.get("timeout_sec");
  if (timeoutRaw !== null) {
    if (!/^[0-9]+$/.test(timeoutRaw) || Number(timeoutRaw) < 1) {
      return {
        ok: false,
        error: `timeout_sec must be a positive whole number, got ${JSON.stringify(timeoutRaw)}`,
      };
    }
    timeoutMs = Math.min(Number(timeoutRaw) * 1000, maxWaitMs);
  }
  const lastEtag = params.get("last_etag") ?? undefined;
  return {
    ok: true,
    value: {
      render: { recursive: recursive.value, alt },
      wait: {
        waitForChange: waitForChange.value,
        lastEtag: lastEtag === "" ? undefined : lastEtag,
        timeoutMs,
      },
    },
  };
}

/**
 * Whether a GET is answered at once. A long-poll without last_etag waits for the next change;
 * with a last_etag that is already stale it returns the current content immediately, so a client
 * that missed a change while it was not polling never waits for the one after.
 */
export function answersImmediately(wait: WaitOptions, currentEtag: string): boolean {
  if (!wait.waitForChange) return true;
  return wait.lastEtag !== undefined && wait.lastEtag !== currentEtag;
}

/** The ETag a waiting request compares against to see a change. */
export function baselineEtag(wait: WaitOptions, currentEtag: string): string {
  return wait.lastEtag ?? currentEtag;
}
