// The command line itself, as a user meets it: --help everywhere (exit 0), usage errors that
// name what is wrong (exit 2), and failures that say what to do (exit 1). Only the CLI runs:
// none of these start a service.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.ts";
import { REPO_ROOT } from "../support/compute.ts";

const COMMANDS = [
  ["up"],
  ["env"],
  ["image"],
  ["image", "push"],
  ["image", "ls"],
  ["image", "show"],
  ["image", "versions"],
  ["image", "deprecate"],
  ["image", "obsolete"],
  ["image", "activate"],
  ["image", "delete-version"],
  ["image", "rollback"],
  ["image", "share"],
  ["image", "unshare"],
  ["image", "family"],
  ["image", "set-family"],
  ["vm-group"],
  ["vm-group", "ls"],
  ["vm-group", "show"],
  ["network"],
  ["network", "ls"],
  ["network", "show"],
  ["operation"],
  ["operation", "watch"],
  ["regions"],
  ["hosts"],
  ["serve"],
  ["serve", "control-plane"],
  ["serve", "regional-manager"],
  ["migrate"],
];

/** No endpoint, token, or admin token from the environment of whoever runs the tests. */
const CLEAN_ENV = {
  GLOBALVM_ENDPOINT: undefined,
  GLOBALVM_TOKEN: undefined,
  GLOBALVM_ADMIN_TOKEN: undefined,
};
const scratch = mkdtempSync(join(tmpdir(), "globalvm-cli-help-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe.concurrent("globalvm --help", { timeout: 90_000 }, () => {
  it("prints the command list with exit 0", async () => {
    const result = await runCli(["--help"]);
    expect(result.code).toBe(0);
    for (const name of [
      "up",
      "env",
      "image",
      "vm-group",
      "network",
      "operation",
      "regions",
      "hosts",
      "serve",
      "migrate",
    ])
      expect(result.stdout).toMatch(new RegExp(`^  ${name} `, "m"));
  });

  it.each(COMMANDS.map((command) => [command.join(" "), command] as const))(
    "%s --help prints its usage with exit 0",
    async (name, command) => {
      const result = await runCli([...command, "--help"]);
      expect(result.stderr).toBe("");
      expect(result.code).toBe(0);
      expect(result.stdout).toContain(`Usage: globalvm ${name}`);
    },
  );

  it("npx globalvm --help runs the package's bin under the project's Node", async () => {
    const npx = spawnSync("npx", ["--no-install", "globalvm", "--help"], {
      cwd: REPO_ROOT,
      encoding: "utf8",
      timeout: 60_000,
    });
    expect(npx.status).toBe(0);
    expect(npx.stdout).toMatch(/^Usage: globalvm <command> \[options\]$/m);
  });

  it("-h works the same", async () => {
    const result = await runCli(["image", "push", "-h"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Usage: globalvm image push FILE --name NAME --region REGION/);
  });
});

/** [what is wrong, command line, what the error must say] */
const USAGE_ERRORS: [string, string[], string[]][] = [
  ["no command at all", [], ["give a command"]],
  ["an unknown command", ["imgae", "ls"], ["unknown command 'imgae'"]],
  [
    "an unknown subcommand",
    ["image", "rm", "x"],
    ["unknown command 'image rm'", "Usage: globalvm image <command>"],
  ],
  ["an unknown flag", ["image", "ls", "--colour"], ["'--colour'"]],
  ["an unknown flag of up", ["up", "--region", "eu-west"], ["'--region'"]],
  ["a flag without its value", ["image", "push", "disk.raw", "--name"], ["'--name", "argument missing"]],
  ["a missing FILE", ["image", "push", "--name", "web", "--region", "eu-west"], ["missing FILE"]],
  ["a missing --region", ["image", "push", "disk.raw", "--name", "web"], ["image push needs --region"]],
  ["an extra argument", ["image", "show", "a", "b"], ["unexpected argument 'b'"]],
  [
    "a bad --format",
    ["image", "push", "d", "--name", "w", "--region", "r", "--format", "vmdk"],
    ["--format must be raw, qcow2 or iso, not 'vmdk'"],
  ],
  ["a bad --port", ["up", "--port", "80a"], ["--port must be a number from 0 to 65535, not '80a'"]],
  ["a bad region name", ["up", "--regions", "eu-west,EU_EAST"], ["'EU_EAST' is not a region name"]],
  ["a repeated region", ["up", "--regions", "eu-west,eu-west"], ["--regions must not repeat a region"]],
  ["not an operation ID", ["operation", "watch", "vmg_123"], ["'vmg_123' is not an operation ID"]],
  [
    "a deprecate without --version",
    ["image", "deprecate", "web"],
    ["--version N is required", "Usage: globalvm image deprecate"],
  ],
  [
    "a bad --at",
    ["image", "obsolete", "web", "--version", "2", "--at", "next week"],
    ["--at must be an ISO 8601 time", "not 'next week'"],
  ],
  ["a rollback without --to or --latest", ["image", "rollback", "web"], ["give one of --to N and --latest"]],
  [
    "a bad --to",
    ["image", "rollback", "web", "--to", "v2"],
    ["--to must be a version number (1, 2, …), not 'v2'"],
  ],
  [
    "a bad --project",
    ["image", "share", "web", "--project", "acme"],
    ["--project must be a project ID (prj_…), not 'acme'"],
  ],
];

describe.concurrent("usage errors exit 2 and name what is wrong", { timeout: 90_000 }, () => {
  it.each(USAGE_ERRORS)("%s", async (_, args, messages) => {
    const result = await runCli(args, CLEAN_ENV);
    expect(result.code).toBe(2);
    for (const message of messages) expect(result.stderr).toContain(message);
    expect(result.stdout).toBe("");
  });
});

describe.concurrent("failures exit 1 and say what to do", { timeout: 90_000 }, () => {
  it("a client command without endpoint and token names both variables and `globalvm up`", async () => {
    const [result, onlyToken] = await Promise.all([
      runCli(["image", "ls"], CLEAN_ENV),
      runCli(["regions"], { ...CLEAN_ENV, GLOBALVM_ENDPOINT: "http://127.0.0.1:1" }),
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("set GLOBALVM_ENDPOINT (or --endpoint) and GLOBALVM_TOKEN (or --token)");
    expect(result.stderr).toContain("`globalvm up` prints both");
    expect(onlyToken.code).toBe(1);
    expect(onlyToken.stderr).toContain("set GLOBALVM_TOKEN (or --token)");
    expect(onlyToken.stderr).not.toContain("set GLOBALVM_ENDPOINT");
  });

  it("an unreachable control plane is named", async () => {
    const result = await runCli(
      ["vm-group", "ls", "--endpoint", "http://127.0.0.1:1", "--token", "t"],
      CLEAN_ENV,
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("Cannot reach the globalvm control plane");
    expect(result.stderr).toContain("http://127.0.0.1:1");
  });

  it("up without QEMU on PATH lists what is missing and how to get it, and starts nothing", async () => {
    const dataDir = join(scratch, "up");
    // Only the directory of node itself: no qemu-system-x86_64, no qemu-img.
    const result = await runCli(["up", "--data-dir", dataDir, "--port", "0"], {
      ...CLEAN_ENV,
      PATH: dirname(process.execPath),
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("prerequisites are missing");
    expect(result.stderr).toContain(
      "qemu-system-x86_64 is not on PATH (Debian/Ubuntu: sudo apt-get install -y qemu-system-x86)",
    );
    expect(result.stderr).toContain("qemu-img is not on PATH");
    expect(result.stdout).toBe("");
    expect(existsSync(dataDir)).toBe(false);
  });
});
