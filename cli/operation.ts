// globalvm operation watch ID: follows an operation with long-polls until it is done.
import { ApiError, type Operation } from "../client/api.ts";
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

const watch: Command = {
  summary: "follow an operation until it is done (exit 0 if it succeeded)",
  usage: WATCH_USAGE,
  async run(args) {
    const { argument: id, json, client } = oneArgumentCommandLine(args, WATCH_USAGE, "ID", checkOperationId);
    const progress = progressWriter();
    const operation = await followOperation(
      client,
      { id },
      {
        onProgress: (current) =>
          progress.update(formatOperationProgress(current), `${current.state} ${current.progress.step}`),
      },
    ).catch((error: unknown) => {
      if (error instanceof ApiError && error.status === 404)
        throw new CommandFailure(`no operation ${id} visible to this token`);
      throw asCommandFailure(error);
    });
    progress.done();
    if (json) process.stdout.write(`${JSON.stringify(operation)}\n`);
    else if (operation.state === "succeeded") process.stdout.write(`operation ${id} succeeded\n`);
    if (operation.state === "succeeded") return EXIT_OK;
    process.stderr.write(
      `operation ${id} ${operation.state}${operation.error ? `: ${operation.error.code}: ${operation.error.message}` : ""}\n`,
    );
    return EXIT_FAILURE;
  },
};

export const operationCommand = commandGroup("operation", "follow long-running operations", { watch });
