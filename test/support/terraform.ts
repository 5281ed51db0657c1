// Runs the real terraform binary against a provider installed into a temporary mirror.

import { spawn } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { installProvider } from "../../provider/build/install.ts";
import { type Stack, type StackOptions, startStack } from "./stack.ts";

export interface TerraformResult {
  code: number | null;
  stdout: string;
  stderr: string;
  output: string;
  elapsedMs: number;
}

export function terraformEnvironment(
  cliConfigFile: string,
  extra: NodeJS.ProcessEnv = {},
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    // These machines point TF_CLI_CONFIG_FILE at a file that does not exist.
    TF_CLI_CONFIG_FILE: cliConfigFile,
    TF_IN_AUTOMATION: "1",
    CHECKPOINT_DISABLE: "1",
    ...extra,
  };
  if (!("TF_LOG" in extra)) delete env.TF_LOG;
  return env;
}

export function terraform(
  cwd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  options: { onOutput?: (text: string, pid: number) => void; detached?: boolean } = {},
): Promise<TerraformResult> {
  return runCaptured("terraform", args, { cwd, env, ...options });
}

/**
 * Runs a command and collects what it prints. With `timeoutMs` it is killed (SIGKILL; its whole
 * process group when `detached`, so terraform's provider goes too) once it outlives that, and
 * the output says so. `running` holds its PID while it runs, for an afterAll to kill what a
 * failed test left. `onOutput` sees everything printed on stdout and stderr so far, on each
 * chunk of stdout.
 */
export function runCaptured(
  command: string,
  args: string[],
  options: {
    cwd: string;
    env: NodeJS.ProcessEnv;
    timeoutMs?: number;
    detached?: boolean;
    running?: Set<number>;
    onOutput?: (output: string, pid: number) => void;
  },
): Promise<TerraformResult> {
  const started = Date.now();
  const child = spawn(command, [...args], {
    cwd: options.cwd,
    env: options.env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: options.detached ?? false,
  });
  const pid = child.pid;
  if (pid) options.running?.add(pid);
  let stdout = "";
  let stderr = "";
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk;
    output += chunk;
    options.onOutput?.(output, pid ?? 0);
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk;
    output += chunk;
  });
  const { timeoutMs } = options;
  const timer =
    timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          if (options.detached && pid) killGroup(pid, "SIGKILL");
          else child.kill("SIGKILL");
        }, timeoutMs);
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      if (pid) options.running?.delete(pid);
      if (timeoutMs !== undefined && Date.now() - started >= timeoutMs)
        output += `\n[killed after ${timeoutMs} ms]`;
      resolve({ code, stdout, stderr, output, elapsedMs: Date.now() - started });
    });
  });
}

/** Signals a process group (a command started `detached`); one already gone is no error. */
export function killGroup(pid: number, signal: NodeJS.Signals) {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/** SIGKILLs each process; one already gone is no error. */
export function killEach(pids: Iterable<number>) {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

/**
 * Starts a stack and installs the provider into `root`'s mirror meanwhile; the environment
 * runs terraform with that provider against the stack's control plane as its project.
 */
export async function startTerraformStack(
  root: string,
  options: StackOptions,
): Promise<{ stack: Stack; env: NodeJS.ProcessEnv }> {
  const installing = installProvider({
    mirrorDir: join(root, "mirror"),
    cliConfigFile: join(root, "terraform.rc"),
  });
  const stack = await startStack(options);
  const installed = await installing;
  const env = terraformEnvironment(installed.cliConfigFile, {
    GLOBALVM_ENDPOINT: stack.controlPlane,
    GLOBALVM_TOKEN: stack.projectToken,
  });
  return { stack, env };
}

/**
 * PIDs of live processes Terraform launched from the given executable (node <executable> after
 * the shebang). The provider daemon runs it too, on purpose beyond Terraform: it is not counted.
 */
export function processesRunning(executable: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      const daemon = args.some((arg) => arg.startsWith("--globalvm-provider-daemon="));
      if (args.includes(executable) && !daemon) pids.push(Number(entry));
    } catch {
      // the process exited while we looked
    }
  }
  return pids;
}

/**
 * Terraform working directories under `root` for tests that apply configurations against a
 * stack: each is a directory with one main.tf, and the commands a test runs in it. `context`
 * is read at each call (the stack starts in a beforeAll).
 */
export function terraformWorkspaces(root: string, context: () => { stack: Stack; env: NodeJS.ProcessEnv }) {
  const expectSuccess = (result: TerraformResult) => {
    if (result.code !== 0)
      throw new Error(`terraform failed (${result.code}):\n${result.output}\n${context().stack.logs()}`);
  };
  return {
    workdir(name: string, hcl: string): string {
      const dir = join(root, name);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, "main.tf"), hcl);
      return dir;
    },
    expectSuccess,
    /** The values of the resource at `address` in the directory's state. */
    async stateOf(dir: string, address: string): Promise<Record<string, any>> {
      const result = await terraform(dir, ["show", "-json"], context().env);
      expectSuccess(result);
      const resources = JSON.parse(result.stdout).values?.root_module?.resources ?? [];
      return resources.find((r: { address: string }) => r.address === address)?.values;
    },
    plan: (dir: string) =>
      terraform(dir, ["plan", "-detailed-exitcode", "-input=false", "-no-color"], context().env),
    apply: (dir: string) =>
      terraform(dir, ["apply", "-auto-approve", "-input=false", "-no-color"], context().env),
  };
}
