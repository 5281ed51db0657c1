// Runs one globalvm command to its end and returns what it printed and its exit code.
import { CLI } from "./processes.ts";
import { runCaptured } from "./terraform.ts";

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export async function runCli(
  args: string[],
  env: Record<string, string | undefined> = {},
  timeoutMs = 60_000,
): Promise<CliResult> {
  const { code, stdout, stderr } = await runCaptured(process.execPath, [CLI, ...args], {
    cwd: process.cwd(),
    env: { ...process.env, ...env },
    timeoutMs,
  });
  return { code, stdout, stderr };
}
