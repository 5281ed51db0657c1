// Following a long-running operation to its end with long-polls (GET /v1/operations/{id}?wait=):
// one loop for the CLI's `operation watch`, the provider's applies and the benches.
import { setTimeout as sleep } from "node:timers/promises";
import { type ApiClient, ApiError, type Operation, type Problem, problemError } from "./api.ts";

export interface FollowOptions {
  /** Give up after this long and answer with the operation as last seen (it keeps running). */
  timeoutMs?: number;
  /** Stops following (the operation keeps running). */
  signal?: AbortSignal;
  /** Long-poll length per request (the API allows at most 60 s). */
  pollWait?: string;
  /** Called with every answer, the first one included. */
  onProgress?: (operation: Operation) => void;
}

/**
 * Asks for the operation until it is done, the timeout passes or the signal aborts. Answers
 * with the last operation seen: `done` says which. A transient answer (5xx) is retried after
 * a short pause rather than losing the operation; any other problem throws an ApiError.
 */
export async function followOperation(
  api: ApiClient,
  operation: Operation | { id: string },
  options: FollowOptions = {},
): Promise<Operation> {
  const deadline = Date.now() + (options.timeoutMs ?? Number.POSITIVE_INFINITY);
  let current: Operation | undefined = "done" in operation ? operation : undefined;
  if (current) options.onProgress?.(current);
  while (!current?.done) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      if (current) return current;
      throw new ApiError(`Timed out following operation ${operation.id}`, {
        detail: "The control plane did not answer within the timeout.",
      });
    }
    options.signal?.throwIfAborted();
    const signals = [
      options.signal,
      Number.isFinite(remaining) ? AbortSignal.timeout(remaining + 5000) : undefined,
    ];
    const signal = AbortSignal.any(signals.filter((s): s is AbortSignal => s !== undefined));
    const result = await api
      .GET("/v1/operations/{id}", {
        // The first ask answers at once, so a caller with only an id sees where it stands.
        params: { path: { id: operation.id }, query: current ? { wait: options.pollWait ?? "30s" } : {} },
        signal,
      })
      .catch((error: unknown) => {
        if (options.signal?.aborted) throw error;
        if (signal.aborted) return null; // our own deadline: loop and answer with the last seen
        throw error;
      });
    if (!result) continue;
    if (!result.data) {
      if (result.response.status >= 500) {
        await sleep(Math.min(2000, Math.max(0, deadline - Date.now())), undefined, {
          signal: options.signal,
        });
        continue;
      }
      throw problemError(
        `Following operation ${operation.id}`,
        result.response,
        result.error as Partial<Problem>,
      );
    }
    current = result.data;
    options.onProgress?.(current);
  }
  return current;
}
