// The `ls` subcommands (image ls, vm-group ls): every page of one list, as a table or as JSON.
import type { ApiClient } from "../client/api.ts";
import { type Command, EXIT_OK, parseCommandLine } from "./command.ts";
import { CONNECTION_OPTIONS, connect, listAll, resolveConnection } from "./connection.ts";
import { formatTable } from "./format.ts";

export function listCommand<T>(spec: {
  summary: string;
  usage: string;
  /** What the listing does, for an API failure's message ("list images"). */
  action: string;
  /** One page of the list, from `pageToken` on. */
  page: (
    client: ApiClient,
    pageToken: string | undefined,
  ) => Promise<{
    data?: { items: T[]; next_page_token: string | null };
    error?: unknown;
    response: Response;
  }>;
  columns: string[];
  row: (item: T) => string[];
}): Command {
  return {
    summary: spec.summary,
    usage: spec.usage,
    async run(args) {
      const { values } = parseCommandLine(args, CONNECTION_OPTIONS, spec.usage);
      const client = connect(resolveConnection(values, process.env));
      const items = await listAll(spec.action, (pageToken) => spec.page(client, pageToken));
      process.stdout.write(
        values.json ? `${JSON.stringify(items)}\n` : formatTable(spec.columns, items.map(spec.row)),
      );
      return EXIT_OK;
    },
  };
}
