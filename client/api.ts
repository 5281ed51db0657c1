// The control plane's API for every client (the CLI, the Terraform provider, the benches): the
// generated OpenAPI types (api.gen.ts, `npm run api-client:generate`) over openapi-fetch, with
// bearer auth, problem+json turned into ApiErrors that name the failing field, and one clear
// error when the control plane cannot be reached.

import createClient from "openapi-fetch";
import type { components, paths } from "./api.gen.ts";

/**
 * A field's place in a request body: "machine.vcpus" is ["machine", "vcpus"], "replicate_to[1]"
 * is ["replicate_to", 1]; `{ key }` steps into a map (Terraform attribute paths have them too).
 */
export type FieldPath = (string | number | { key: string })[];

/**
 * A call that failed: the message says what was attempted and how it ended, `detail` says
 * why, and `path` names the request field the control plane refused, when it named one.
 * (The provider shows these as diagnostics, the CLI as messages.)
 */
export class ApiError extends Error {
  readonly detail: string | undefined;
  readonly path: FieldPath | undefined;
  /** The HTTP status the control plane answered with (absent when it did not answer). */
  readonly status: number | undefined;

  constructor(
    summary: string,
    options: { detail?: string; path?: FieldPath; status?: number; cause?: unknown } = {},
  ) {
    super(summary, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "ApiError";
    this.detail = options.detail;
    this.path = options.path;
    this.status = options.status;
  }
}

export type ApiClient = ReturnType<typeof createClient<paths>>;
export type Schemas = components["schemas"];
export type Image = Schemas["Image"];
export type ImageVersionDetail = Schemas["ImageVersionDetail"];
export type Network = Schemas["Network"];
export type FirewallRule = Schemas["FirewallRule"];
export type Host = Schemas["Host"];
export type VmGroup = Schemas["VmGroup"];
export type Operation = Schemas["Operation"];
export type Problem = Schemas["Problem"];

export interface ApiClientOptions {
  endpoint: string;
  token: string;
  /** Replaces global fetch (tests). */
  fetch?: typeof fetch;
}

export function createApiClient(options: ApiClientOptions): ApiClient {
  const endpoint = options.endpoint.replace(/\/+$/, "");
  const baseFetch = options.fetch ?? globalThis.fetch;
  return createClient<paths>({
    baseUrl: endpoint,
    headers: { authorization: `Bearer ${options.token}` },
    // Network failures become one diagnostic naming the endpoint, not a stack trace.
    fetch: async (request: Request) => {
      try {
        return await baseFetch(request);
      } catch (error) {
        if (request.signal.aborted) throw error;
        throw unreachable(endpoint, error);
      }
    },
  });
}

export function unreachable(endpoint: string, error: unknown): ApiError {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  const reason = cause?.code ?? cause?.message ?? (error as Error).message ?? String(error);
  return new ApiError("Cannot reach the globalvm control plane", {
    detail: `No answer from ${endpoint} (${reason}). Check the provider's \`endpoint\` (or GLOBALVM_ENDPOINT) and that the control plane is running.`,
    cause: error,
  });
}

/** Converts a control-plane field path ("machine.vcpus", "replicate_to[1]") to an attribute path. */
export function fieldPath(path: string): FieldPath {
  const steps: FieldPath = [];
  for (const part of path.split(".")) {
    const match = /^([^[\]]+)((?:\[\d+\])*)$/.exec(part);
    if (!match) return [];
    steps.push(match[1] as string);
    for (const index of (match[2] ?? "").matchAll(/\[(\d+)\]/g)) steps.push(Number(index[1]));
  }
  return steps;
}

/** The problem an API call answered with, as an ApiError (field errors get their path). */
export function problemError(
  action: string,
  response: Response,
  problem: Partial<Problem> | undefined,
  pathMap: (path: FieldPath) => FieldPath = (path) => path,
): ApiError {
  const first = problem?.errors?.[0];
  const detail = [
    problem?.detail ?? `HTTP ${response.status}`,
    ...(problem?.errors ?? []).map((e) => `${e.path}: ${e.message}`),
  ].join("\n");
  const path = first ? pathMap(fieldPath(first.path)) : undefined;
  return new ApiError(`${action} failed: ${problem?.title ?? response.statusText} (${response.status})`, {
    detail,
    status: response.status,
    ...(path && path.length > 0 ? { path } : {}),
  });
}

/** Returns `data`, or throws the API's problem as an ApiError. */
export function expectData<T>(
  action: string,
  result: { data?: T; error?: unknown; response: Response },
  pathMap?: (path: FieldPath) => FieldPath,
): T {
  if (result.data !== undefined && result.response.ok) return result.data;
  throw problemError(action, result.response, result.error as Partial<Problem> | undefined, pathMap);
}

/** GET /healthz with a short timeout: the provider's reachability check at configure. */
export async function checkReachable(
  endpoint: string,
  options: { timeoutMs?: number; fetch?: typeof fetch } = {},
): Promise<void> {
  const url = `${endpoint.replace(/\/+$/, "")}/healthz`;
  let response: Response;
  try {
    response = await (options.fetch ?? globalThis.fetch)(url, {
      signal: AbortSignal.timeout(options.timeoutMs ?? 5000),
    });
  } catch (error) {
    throw unreachable(endpoint, error);
  }
  if (!response.ok) {
    throw new ApiError("The globalvm endpoint is not a healthy control plane", {
      detail: `GET ${url} answered HTTP ${response.status}.`,
    });
  }
}
