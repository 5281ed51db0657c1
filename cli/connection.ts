// Which control plane a client command talks to, and as whom: --endpoint/--token, else
// GLOBALVM_ENDPOINT/GLOBALVM_TOKEN. Calls go through the client generated from the served
// OpenAPI document (client/api.ts), so the CLI is one more real consumer of it.
import { type ApiClient, ApiError, createApiClient, expectData, type Problem } from "../client/api.ts";
import { CommandFailure, parseCommandLine, positionalArgs } from "./command.ts";

export const CONNECTION_OPTIONS = {
  endpoint: { type: "string" },
  token: { type: "string" },
  json: { type: "boolean", default: false },
} as const;

export const CONNECTION_HELP = `  --endpoint URL   control plane URL (default: $GLOBALVM_ENDPOINT)
  --token TOKEN    project token (default: $GLOBALVM_TOKEN)
  --json           print JSON on stdout, for scripts
  -h, --help       show this help`;

export interface Connection {
  endpoint: string;
  token: string;
}

/** The endpoint and token, or an error saying exactly which variable to set. */
export function resolveConnection(
  flags: { endpoint?: string | undefined; token?: string | undefined },
  env: NodeJS.ProcessEnv,
): Connection {
  const endpoint = flags.endpoint ?? env.GLOBALVM_ENDPOINT;
  const token = flags.token ?? env.GLOBALVM_TOKEN;
  const missing = [
    ...(endpoint ? [] : ["GLOBALVM_ENDPOINT (or --endpoint)"]),
    ...(token ? [] : ["GLOBALVM_TOKEN (or --token)"]),
  ];
  if (missing.length > 0) {
    throw new CommandFailure(
      `set ${missing.join(" and ")}`,
      "`globalvm up` prints both: export GLOBALVM_ENDPOINT=<endpoint> GLOBALVM_TOKEN=<project token>",
    );
  }
  return { endpoint: endpoint as string, token: token as string };
}

export function connect(connection: Connection): ApiClient {
  return createApiClient(connection);
}

/** The API's answer, or a CommandFailure with its problem (title, detail, failing fields). */
export function expectAnswer<T>(
  action: string,
  result: { data?: T; error?: unknown; response: Response },
): T {
  try {
    return expectData(action, result);
  } catch (error) {
    throw asCommandFailure(error);
  }
}

export function asCommandFailure(error: unknown): unknown {
  if (error instanceof ApiError) return new CommandFailure(error.message, error.detail);
  return error;
}

export function problemCode(error: unknown): string | undefined {
  return (error as Partial<Problem> | undefined)?.code;
}

/** Follows next_page_token until the list ends. */
export async function listAll<T>(
  action: string,
  page: (pageToken: string | undefined) => Promise<{
    data?: { items: T[]; next_page_token: string | null };
    error?: unknown;
    response: Response;
  }>,
): Promise<T[]> {
  const items: T[] = [];
  let token: string | undefined;
  do {
    const answer = expectAnswer(action, await callApi(() => page(token)));
    items.push(...answer.items);
    token = answer.next_page_token ?? undefined;
  } while (token);
  return items;
}

/** Runs a client call, turning an unreachable endpoint into a CommandFailure. */
export async function callApi<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw asCommandFailure(error);
  }
}

/** The query of one page of a list: the largest page the API serves, from `page_token` on. */
export function pageQuery(page_token: string | undefined) {
  return { page_size: 200, ...(page_token ? { page_token } : {}) };
}

/**
 * One resource named by ID or by name: an argument of the ID's form is fetched by ID (undefined
 * when there is none), any other is looked up through the list's `name` filter.
 */
export async function findByIdOrName<T>(
  what: string,
  idOrName: string,
  idPattern: RegExp,
  byId: () => Promise<{ data?: T; error?: unknown; response: Response }>,
  byName: () => Promise<{ data?: { items: T[] }; error?: unknown; response: Response }>,
): Promise<T | undefined> {
  if (idPattern.test(idOrName)) {
    const answer = await callApi(byId);
    if (answer.response.status === 404) return undefined;
    return expectAnswer(`get ${what} ${idOrName}`, answer);
  }
  return expectAnswer(`find ${what} ${idOrName}`, await callApi(byName)).items[0];
}

/**
 * How a client command taking one argument (`image show ID|NAME`) starts: the connection flags
 * and the argument, named `argumentName` in usage errors, then a client for the connection.
 * `check` may refuse the argument (a UsageError) before the connection is looked at.
 */
export function oneArgumentCommandLine(
  args: string[],
  usage: string,
  argumentName: string,
  check?: (argument: string) => void,
): { argument: string; json: boolean; client: ApiClient } {
  const { values, positionals } = parseCommandLine(args, CONNECTION_OPTIONS, usage, true);
  const [argument] = positionalArgs(positionals, [argumentName], usage) as [string];
  check?.(argument);
  return { argument, json: values.json, client: connect(resolveConnection(values, process.env)) };
}
