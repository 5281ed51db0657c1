// A thin wrapper over the generated OpenAPI client (openapi-fetch + api.gen.ts): bearer
// auth, problem+json turned into diagnostics with attribute paths, and one clear error
// when the control plane cannot be reached.

import createClient from "openapi-fetch";
import { type AttributePath, DiagnosticError } from "../framework/diagnostics.ts";
import type { components, paths } from "./api.gen.ts";

export type ApiClient = ReturnType<typeof createClient<paths>>;
export type Schemas = components["schemas"];
export type Image = Schemas["Image"];
export type Network = Schemas["Network"];
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

export function unreachable(endpoint: string, error: unknown): DiagnosticError {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  const reason = cause?.code ?? cause?.message ?? (error as Error).message ?? String(error);
  return new DiagnosticError("Cannot reach the globalvm control plane", {
    detail: `No answer from ${endpoint} (${reason}). Check the provider's \`endpoint\` (or GLOBALVM_ENDPOINT) and that the control plane is running.`,
    cause: error,
  });
}

/** Converts a control-plane field path ("machine.vcpus", "replicate_to[1]") to an attribute path. */
export function fieldPath(path: string): AttributePath {
  const steps: AttributePath = [];
  for (const part of path.split(".")) {
    const match = /^([^[\]]+)((?:\[\d+\])*)$/.exec(part);
    if (!match) return [];
    steps.push(match[1] as string);
    for (const index of (match[2] ?? "").matchAll(/\[(\d+)\]/g)) steps.push(Number(index[1]));
  }
  return steps;
}

/** Throws the problem an API call answered with as a DiagnosticError (field errors get their path). */
export function problemError(
  action: string,
  response: Response,
  problem: Partial<Problem> | undefined,
  pathMap: (path: AttributePath) => AttributePath = (path) => path,
): DiagnosticError {
  const first = problem?.errors?.[0];
  const detail = [
    problem?.detail ?? `HTTP ${response.status}`,
    ...(problem?.errors ?? []).map((e) => `${e.path}: ${e.message}`),
  ].join("\n");
  const path = first ? pathMap(fieldPath(first.path)) : undefined;
  return new DiagnosticError(
    `${action} failed: ${problem?.title ?? response.statusText} (${response.status})`,
    {
      detail,
      ...(path && path.length > 0 ? { path } : {}),
    },
  );
}

/** Returns `data`, or throws the API's problem as a diagnostic. */
export function expectData<T>(
  action: string,
  result: { data?: T; error?: unknown; response: Response },
  pathMap?: (path: AttributePath) => AttributePath,
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
    throw new DiagnosticError("The globalvm endpoint is not a healthy control plane", {
      detail: `GET ${url} answered HTTP ${response.status}.`,
    });
  }
}
