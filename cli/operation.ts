// globalvm operation watch ID: follows an operation with long-polls until it is done.
import { type ApiClient, ApiError, type Operation } from "../client/api.ts";
import { followOperation } from "../client/operations.ts";
import { type Command, CommandFailure, commandGroup, EXIT_FAILURE, EXIT_OK, UsageError } from "./command.ts";
import { asCommandFailure, CONNECTION_HELP, oneArgumentCommandLine } from "./connection.ts";
import { formatBytes } from "./format.ts";
import { progressWriter } from "./progress.ts";

const WATCH_USAGE = `Usage: globalvm operation watch ID [options]

Follows a long-running operation (GET /v1/operations/{id}?wait=) and prints its progress on
stderr until it is done. Exit code 0 when it succeeded, 1 when it failed or was cancelled.

Options:
${CONNECTION_HELP}
`;

/** One line: state, step, bytes, and each datacenter's part. */
export function formatOperationProgress(operation: Operation): string {
  const { progress } = operation;
  const bytes = (done: number, total: number | null) =>
    total ? ` ${formatBytes(done)}/${formatBytes(total)}` : done > 0 ? ` ${formatBytes(done)}` : "";
  const children = progress.children.map(
    (child) => `${child.datacenter}: ${child.step ?? "-"}${bytes(child.bytes_done, child.bytes_total)}`,
  );
  return [
    `${operation.kind} ${operation.state}`,
    `${progress.step ?? "-"}${bytes(progress.bytes_done, progress.bytes_total)}`,
    ...children,
  ].join("  ");
}

function checkOperationId(id: string) {
  if (!/^op_[0-9a-hjkmnp-tv-z]{26}$/.test(id))
    throw new UsageError(`'${id}' is not an operation ID (op_…)`, WATCH_USAGE);
}

/**
 * Follows an operation to its end with its progress on stderr (one line, rewritten on a
 * terminal); answers the operation as it ended.
 */
export async function watchOperation(
  client: ApiClient,
  operation: Operation | { id: string },
): Promise<Operation> {
  const progress = progressWriter();
  try {
    return await followOperation(client, operation, {
      onProgress: (current) =>
        progress.update(formatOperationProgress(current), `${current.state} ${current.progress.step}`),
    });
  } catch (error) {
    if (error instanceof ApiError && error.status === 404)
      throw new CommandFailure(`no operation ${operation.id} visible to this token`);
    throw asCommandFailure(error);
  } finally {
    progress.done();
  }
}

/** Prints how an operation ended (JSON, or a line) and answers the exit code: 0 when it succeeded. */
export function reportOperationEnd(
  operation: Operation,
  json: boolean,
  done = `operation ${operation.id} succeeded`,
): number {
  if (json) process.stdout.write(`${JSON.stringify(operation)}\n`);
  else if (operation.state === "succeeded") process.stdout.write(`${done}\n`);
  if (operation.state === "succeeded") return EXIT_OK;
  process.stderr.write(
    `operation ${operation.id} ${operation.state}${operation.error ? `: ${operation.error.code}: ${operation.error.message}` : ""}\n`,
  );
  return EXIT_FAILURE;
}

const watch: Command = {
  summary: "follow an operation until it is done (exit 0 if it succeeded)",
  usage: WATCH_USAGE,
  async run(args) {
    const { argument: id, json, client } = oneArgumentCommandLine(args, WATCH_USAGE, "ID", checkOperationId);
    return reportOperationEnd(await watchOperation(client, { id }), json);
  },
};

export const operationCommand = commandGroup("operation", "follow long-running operations", { watch });
