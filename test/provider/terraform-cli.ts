// Runs the real terraform binary against a provider installed into a temporary mirror.

import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

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
  const started = Date.now();
  const child = spawn("terraform", [...args], {
    cwd,
    env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: options.detached ?? false,
  });
  let stdout = "";
  let stderr = "";
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk;
    output += chunk;
    options.onOutput?.(output, child.pid ?? 0);
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk;
    output += chunk;
  });
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr, output, elapsedMs: Date.now() - started }));
  });
}

/** PIDs of live processes running the given executable (node <executable> after the shebang). */
export function processesRunning(executable: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      if (args.includes(executable)) pids.push(Number(entry));
    } catch {
      // the process exited while we looked
    }
  }
  return pids;
}
