#!/usr/bin/env node
// The globalvm command. Runs under Node 24 (type stripping), which the npm scripts provide.
// Exit codes: 0 ok, 1 an operation or API call failed, 2 the command line is wrong.
import "../common/process-tuning.ts";
import { ConfigurationError } from "../common/configuration-error.ts";
import {
  type Command,
  CommandFailure,
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_USAGE,
  UsageError,
  wantsHelp,
} from "./command.ts";
import { envCommand } from "./env.ts";
import { firewallRuleCommand } from "./firewall-rule.ts";
import { hostsCommand } from "./hosts.ts";
import { imageCommand } from "./image.ts";
import { networkCommand } from "./network.ts";
import { operationCommand } from "./operation.ts";
import { regionsCommand } from "./regions.ts";
import { migrateCommand, serveCommand } from "./serve.ts";
import { upCommand } from "./up.ts";
import { vmGroupCommand } from "./vm-group.ts";

const COMMANDS: Record<string, Command> = {
  up: upCommand,
  env: envCommand,
  image: imageCommand,
  "vm-group": vmGroupCommand,
  network: networkCommand,
  "firewall-rule": firewallRuleCommand,
  operation: operationCommand,
  regions: regionsCommand,
  hosts: hostsCommand,
  serve: serveCommand,
  migrate: migrateCommand,
};

const HELP = `globalvm — a global computing interface for virtual machines

Usage: globalvm <command> [options]

Commands:
${Object.entries(COMMANDS)
  .map(([name, command]) => `  ${name.padEnd(10)}  ${command.summary}`)
  .join("\n")}

Run 'globalvm <command> --help' for a command's options and subcommands.

Client commands (image, vm-group, network, firewall-rule, operation, regions, hosts) talk to $GLOBALVM_ENDPOINT with
$GLOBALVM_TOKEN (or --endpoint/--token); 'globalvm up' prints both.

Exit codes: 0 ok, 1 an operation or API call failed, 2 a usage error.
`;

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) throw new UsageError("give a command", HELP);
  if (name === "help" || name === "--help" || name === "-h") {
    process.stdout.write(HELP);
    return EXIT_OK;
  }
  const command = COMMANDS[name];
  if (!command) throw new UsageError(`unknown command '${name}'`, HELP);
  // Groups handle --help themselves, per subcommand.
  if (!command.subcommands && wantsHelp(rest)) {
    process.stdout.write(command.usage);
    return EXIT_OK;
  }
  return command.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof UsageError) {
      process.stderr.write(`globalvm: ${error.message}\n\n${error.usage}`);
      process.exit(EXIT_USAGE);
    }
    if (error instanceof ConfigurationError) {
      process.stderr.write(`globalvm: ${error.message}\n`);
      process.exit(EXIT_FAILURE);
    }
    if (error instanceof CommandFailure) {
      process.stderr.write(`globalvm: ${error.message}\n${error.detail ? `${error.detail}\n` : ""}`);
      process.exit(EXIT_FAILURE);
    }
    process.stderr.write(
      `globalvm: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(EXIT_FAILURE);
  },
);
