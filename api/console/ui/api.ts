// The console speaks the public API as any client does: a bearer token from sessionStorage
// (never in a URL), and lists followed live with the API's long-poll: the last ETag in
// If-None-Match and `Prefer: wait=N`, answered as soon as the list changes.
import type { Image, ImageReplica } from "../../../schemas/images.ts";
import type { Instance } from "../../../schemas/instances.ts";
import type { Operation } from "../../../schemas/operations.ts";
import type { PlacementCandidate, PlacementExplanation } from "../../../schemas/placements.ts";
import type { Datacenter, Region } from "../../../schemas/regions.ts";
import type { VmGroup } from "../../../schemas/vm-groups.ts";

/** One page of a list, as every list route answers it. */
export interface Page<T> {
  items: T[];
  next_page_token: string | null;
}

/** The API's shapes, from the schemas its routes are declared with (types only: nothing is bundled). */
export interface Schemas {
  Image: Image;
  ImageReplica: ImageReplica;
  ImagePage: Page<Image>;
  Instance: Instance;
  InstancePage: Page<Instance>;
  Operation: Operation;
  OperationPage: Page<Operation>;
  Datacenter: Datacenter;
  DatacenterPage: Page<Datacenter>;
  Region: Region;
  RegionPage: Page<Region>;
  VmGroup: VmGroup;
  VmGroupPage: Page<VmGroup>;
  PlacementCandidate: PlacementCandidate;
  PlacementExplanation: PlacementExplanation;
}

const TOKEN_KEY = "globalvm.console.token";
/** Seconds each long-poll may be held (the API caps it at 30). */
const WAIT_SECONDS = 25;
const RETRY_MS = 2000;

export const session = {
  token: (): string | null => sessionStorage.getItem(TOKEN_KEY),
  signIn: (token: string) => sessionStorage.setItem(TOKEN_KEY, token),
  signOut: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** Called when the API refuses the token: the console goes back to its sign-in form. */
let onUnauthenticated = () => {};
export function whenUnauthenticated(handler: () => void) {
  onUnauthenticated = handler;
}

type Problem = { code?: string; detail?: string; title?: string; [key: string]: unknown };

export class ApiError extends Error {
  readonly status: number;
  readonly problem: Problem;
  constructor(status: number, problem: Problem) {
    super(problem.detail ?? problem.title ?? `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  return { accept: "application/json", authorization: `Bearer ${session.token() ?? ""}`, ...extra };
}

async function problemOf(response: Response): Promise<ApiError> {
  const problem = await response.json().catch(() => ({}));
  if (response.status === 401) onUnauthenticated();
  return new ApiError(response.status, problem as Problem);
}

export async function get<T>(path: string, signal?: AbortSignal): Promise<T> {
  const response = await fetch(path, { headers: headers(), signal: signal ?? null });
  if (!response.ok) throw await problemOf(response);
  return (await response.json()) as T;
}

export async function post<T>(path: string, body: unknown, signal?: AbortSignal): Promise<T> {
  const response = await fetch(path, {
    method: "POST",
    headers: headers({ "content-type": "application/json" }),
    body: JSON.stringify(body),
    signal: signal ?? null,
  });
  if (!response.ok) throw await problemOf(response);
  return (await response.json()) as T;
}

/** Every page of a list (a bounded number of them). */
export async function all<T>(path: string, signal?: AbortSignal, maxPages = 20): Promise<T[]> {
  const items: T[] = [];
  let token: string | null = null;
  for (let page = 0; page < maxPages; page++) {
    const separator = path.includes("?") ? "&" : "?";
    const answer: Page<T> = await get(
      token ? `${path}${separator}page_token=${encodeURIComponent(token)}` : path,
      signal,
    );
    items.push(...answer.items);
    token = answer.next_page_token;
    if (!token) break;
  }
  return items;
}

const pause = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });

/**
 * Follows `path` until `signal` aborts: `onChange` gets its first answer at once, then each new
 * one as the API long-poll returns it; `onError` gets refusals and failures (it is retried).
 */
export function watch<T>(
  path: string,
  onChange: (value: T) => void,
  onError: (error: unknown) => void,
  signal: AbortSignal,
): void {
  void (async () => {
    let etag: string | null = null;
    while (!signal.aborted) {
      try {
        const response: Response = await fetch(path, {
          headers: headers(etag ? { "if-none-match": etag, prefer: `wait=${WAIT_SECONDS}` } : {}),
          signal,
          cache: "no-store",
        });
        if (response.status === 304) continue;
        if (!response.ok) throw await problemOf(response);
        etag = response.headers.get("etag");
        onChange((await response.json()) as T);
        if (!etag) await pause(RETRY_MS, signal);
      } catch (error) {
        if (signal.aborted) return;
        onError(error);
        if (error instanceof ApiError && error.status === 401) return;
        await pause(RETRY_MS, signal);
      }
    }
  })();
}
