// Starts one throwaway PostgreSQL cluster for the whole run; each test file creates its own
// database in it (see test/support/databases.ts). CI must never silently skip the Postgres
// suites, so a missing server binary is a hard failure here, not a skip.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";

const runningAsRoot = process.getuid?.() === 0;

function asClusterOwner(command: string, args: string[]): [string, string[]] {
  // initdb and postgres refuse to run as root.
  return runningAsRoot ? ["runuser", ["-u", "postgres", "--", command, ...args]] : [command, args];
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject()));
    });
  });
}

async function waitForReady(port: number, server: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (server.exitCode !== null) throw new Error(`postgres exited early:\n${log()}`);
    try {
      execFileSync("pg_isready", ["-h", "127.0.0.1", "-p", String(port)], { stdio: "ignore" });
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`postgres did not become ready in 30 s:\n${log()}`);
}

export default async function setup(project: TestProject) {
  const dir = mkdtempSync(join(tmpdir(), "globalvm-pg-"));
  chmodSync(dir, 0o777);
  const dataDir = join(dir, "data");
  const [initCmd, initArgs] = asClusterOwner("initdb", [
    "-D",
    dataDir,
    "-A",
    "trust",
    "-U",
    "postgres",
    "--no-sync",
  ]);
  execFileSync(initCmd, initArgs, { stdio: "pipe" });

  const port = await freePort();
  const [pgCmd, pgArgs] = asClusterOwner("postgres", [
    "-D",
    dataDir,
    "-p",
    String(port),
    "-h",
    "127.0.0.1",
    "-k",
    dir,
    "-c",
    "fsync=off",
    "-c",
    "synchronous_commit=off",
    "-c",
    "full_page_writes=off",
    "-c",
    "max_connections=300",
  ]);
  let output = "";
  const server = spawn(pgCmd, pgArgs, { stdio: ["ignore", "pipe", "pipe"] });
  server.stdout?.on("data", (d) => (output += d));
  server.stderr?.on("data", (d) => (output += d));
  await waitForReady(port, server, () => output);

  project.provide("postgresAdminUrl", `postgres://postgres@127.0.0.1:${port}/postgres`);

  return async () => {
    // runuser does not pass signals on to postgres, so stop the cluster the supported way.
    const [stopCmd, stopArgs] = asClusterOwner("pg_ctl", [
      "-D",
      dataDir,
      "stop",
      "-m",
      "fast",
      "-w",
      "-t",
      "20",
    ]);
    try {
      execFileSync(stopCmd, stopArgs, { stdio: "ignore" });
    } catch {
      server.kill("SIGKILL");
    }
    await Promise.race([
      new Promise((r) => (server.exitCode !== null ? r(null) : server.once("exit", r))),
      new Promise((r) => setTimeout(r, 5_000)),
    ]);
    rmSync(dir, { recursive: true, force: true });
  };
}
