// globalvm env: the shell lines that point a terminal at the stack `globalvm up` runs, so a
// second terminal needs one command (`eval "$(npx globalvm env)"`) instead of copied tokens.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { type Command, CommandFailure, EXIT_OK, parseCommandLine } from "./command.ts";
import { REPO_ROOT } from "./prerequisites.ts";

export const ENV_FILE = "env.sh";

/** The data dir of `up` and `env`: --data-dir, else $GLOBALVM_DATA_DIR, else .globalvm/up here. */
export function upDataDir(given: string | undefined, env: NodeJS.ProcessEnv): string {
  return resolve(given ?? env.GLOBALVM_DATA_DIR ?? ".globalvm/up");
}
/** Where `npm run provider:install` writes terraform's CLI configuration by default. */
export const TERRAFORM_CLI_CONFIG = join(REPO_ROOT, ".globalvm/terraform/terraform.rc");

const USAGE = `Usage: globalvm env [--data-dir DIR]

Prints the shell lines that point this terminal at the stack 'globalvm up' runs:
GLOBALVM_ENDPOINT, GLOBALVM_TOKEN (the project token) and, when the provider is installed
(npm run provider:install), TF_CLI_CONFIG_FILE. Use it as:

  eval "$(npx globalvm env)"

Options:
  --data-dir DIR  the data dir of 'globalvm up'
                  (default: $GLOBALVM_DATA_DIR, else .globalvm/up in the current directory)
  -h, --help      show this help
`;

/** Single-quoted for sh: the values are tokens and paths, but never trust them to be plain. */
function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

export function envLines(values: { endpoint: string; token: string; terraformCliConfig?: string }): string {
  const lines = [
    `export GLOBALVM_ENDPOINT=${shellQuote(values.endpoint)}`,
    `export GLOBALVM_TOKEN=${shellQuote(values.token)}`,
  ];
  if (values.terraformCliConfig)
    lines.push(`export TF_CLI_CONFIG_FILE=${shellQuote(values.terraformCliConfig)}`);
  return `${lines.join("\n")}\n`;
}

/** Written by `up` once it is ready; mode 0600 because it holds the project token. */
export function writeEnvFile(dataDir: string, values: { endpoint: string; token: string }): void {
  const terraformCliConfig = existsSync(TERRAFORM_CLI_CONFIG) ? TERRAFORM_CLI_CONFIG : undefined;
  writeFileSync(join(dataDir, ENV_FILE), envLines({ ...values, terraformCliConfig }), { mode: 0o600 });
}

export const envCommand: Command = {
  summary: "print the shell lines that point a terminal at the stack 'globalvm up' runs",
  usage: USAGE,
  async run(args) {
    const { values } = parseCommandLine(args, { "data-dir": { type: "string" } }, USAGE);
    const dataDir = upDataDir(values["data-dir"], process.env);
    const path = join(dataDir, ENV_FILE);
    if (!existsSync(path)) {
      throw new CommandFailure(
        `no stack is described in ${dataDir}`,
        "start one with 'npx globalvm up' (or scripts/quickstart) and run this again once it prints that globalvm is up",
      );
    }
    process.stdout.write(readFileSync(path, "utf8"));
    return EXIT_OK;
  },
};
