// What every globalvm command shares: argument parsing with node:util parseArgs, --help,
// and the errors that decide the exit code (0 ok, 1 operation or API failure, 2 usage).
import { type ParseArgsOptionsConfig, parseArgs } from "node:util";

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** Bad command line: printed with the command's usage, exit code 2. */
export class UsageError extends Error {
  readonly usage: string;
  constructor(message: string, usage: string) {
    super(message);
    this.usage = usage;
  }
}

/** A failure the user can act on (missing prerequisite, API refusal): exit code 1, no stack. */
export class CommandFailure extends Error {
  readonly detail: string | undefined;
  constructor(message: string, detail?: string) {
    super(message);
    this.detail = detail;
  }
}

export interface Command {
  /** One line for the parent's help. */
  summary: string;
  /** The full help text printed by --help. */
  usage: string;
  /** Resolves with the exit code. */
  run(args: string[]): Promise<number>;
  /** Set on a group of subcommands. */
  subcommands?: Record<string, Command>;
}

export function wantsHelp(args: readonly string[]): boolean {
  return args.includes("--help") || args.includes("-h");
}

/** parseArgs in strict mode; its errors (unknown flag, missing value) become usage errors naming the flag. */
export function parseCommandLine<const T extends ParseArgsOptionsConfig>(
  args: string[],
  options: T,
  usage: string,
  allowPositionals = false,
) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals });
  } catch (error) {
    const code = (error as { code?: string }).code ?? "";
    if (code.startsWith("ERR_PARSE_ARGS")) throw new UsageError((error as Error).message, usage);
    throw error;
  }
}

/** Exactly `count` positional arguments, named for the error message. */
export function positionalArgs(positionals: string[], names: string[], usage: string): string[] {
  if (positionals.length < names.length)
    throw new UsageError(`missing ${names.slice(positionals.length).join(" ")}`, usage);
  if (positionals.length > names.length)
    throw new UsageError(`unexpected argument '${positionals[names.length]}'`, usage);
  return positionals;
}

/** A command with subcommands (`image push|ls|show`): dispatches, or prints its help. */
export function commandGroup(name: string, summary: string, subcommands: Record<string, Command>): Command {
  const width = Math.max(...Object.keys(subcommands).map((s) => s.length));
  const usage = `Usage: globalvm ${name} <command> [options]

${summary}

Commands:
${Object.entries(subcommands)
  .map(([sub, command]) => `  ${sub.padEnd(width)}  ${command.summary}`)
  .join("\n")}

Run 'globalvm ${name} <command> --help' for a command's options.
`;
  return {
    summary,
    usage,
    subcommands,
    async run(args) {
      const [sub, ...rest] = args;
      if (sub === undefined || sub === "--help" || sub === "-h" || sub === "help") {
        if (sub === undefined) throw new UsageError(`globalvm ${name} needs a command`, usage);
        process.stdout.write(usage);
        return EXIT_OK;
      }
      const command = subcommands[sub];
      if (!command) throw new UsageError(`unknown command '${name} ${sub}'`, usage);
      if (wantsHelp(rest)) {
        process.stdout.write(command.usage);
        return EXIT_OK;
      }
      return command.run(rest);
    },
  };
}

export function parsePort(text: string | undefined, fallback: number, usage: string): number {
  if (text === undefined) return fallback;
  const port = Number(text);
  if (!/^\d+$/.test(text) || !Number.isInteger(port) || port > 65_535)
    throw new UsageError(`--port must be a number from 0 to 65535, not '${text}'`, usage);
  return port;
}

/** Runs `close` on the first SIGINT or SIGTERM, then exits 0 (1 if closing failed). */
export function closeOnSignal(close: () => Promise<void>): void {
  let closing = false;
  const stop = (signal: NodeJS.Signals) => {
    if (closing) {
      // A second Ctrl-C does not wait for the orderly stop.
      process.stderr.write(`globalvm: ${signal} again, exiting without waiting\n`);
      process.exit(130);
    }
    closing = true;
    process.stderr.write(`globalvm: ${signal}, stopping (again to exit at once)\n`);
    close().then(
      () => process.exit(0),
      (error: unknown) => {
        process.stderr.write(`globalvm: stopping failed: ${error instanceof Error ? error.stack : error}\n`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
