// The provider daemon: one long-lived process per build and user that serves every launch
// Terraform makes as a session of its own (session.ts), so a launch costs a unix-socket
// round trip instead of a Node, TLS and bundle start, and the code serving it is already
// compiled. A session ends with its launch: on Shutdown the launch is told to exit, and
// when the launch's connection closes (Terraform killed it) the session is closed.
// Started by the first launch that finds none (daemon-client.ts); exits when idle.

import { chmodSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { processIsAlive } from "../../common/process-alive.ts";
import type { ProviderDefinition } from "../framework/definitions.ts";
import { encodeFrame, FrameKind, type LaunchRequest, MAX_LAUNCH_REQUEST_BYTES } from "./daemon-protocol.ts";
import { type ProviderSession, startSession } from "./session.ts";

export interface DaemonOptions {
  socketPath: string;
  idleMs: number;
  log?: (line: string) => void;
}

/**
 * Takes the daemon's pid file, created exclusively: launches that start together each spawn
 * a daemon, and all but one must leave. A file naming a dead process (a daemon killed) is
 * taken over. Returns false when another daemon holds it.
 */
export function takePidFile(path: string): boolean {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(path, String(process.pid), { flag: "wx", mode: 0o600 });
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    const holder = Number(readFileSync(path, "utf8").trim());
    // Empty: its daemon is between creating and writing it, so it is alive.
    if (!holder || processIsAlive(holder)) return false;
    rmSync(path, { force: true });
  }
  return false;
}

export function parseLaunchRequest(text: string): LaunchRequest {
  const value = JSON.parse(text) as Partial<LaunchRequest>;
  if (
    !value ||
    typeof value !== "object" ||
    typeof value.cwd !== "string" ||
    !value.env ||
    typeof value.env !== "object"
  )
    throw new Error("a launch request has `env` (object) and `cwd` (string)");
  return { env: value.env, cwd: value.cwd };
}

export async function runDaemon<P>(provider: ProviderDefinition<P>, options: DaemonOptions): Promise<void> {
  const log =
    options.log ?? ((line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`));
  const pidFile = options.socketPath.replace(/\.sock$/, ".pid");
  if (!takePidFile(pidFile)) {
    log("another daemon serves this build; exiting");
    process.exit(0);
  }
  // Left by a daemon that died, if there: this one serves in its place.
  rmSync(options.socketPath, { force: true });
  const exit = (code: number) => {
    server.close();
    rmSync(options.socketPath, { force: true });
    rmSync(pidFile, { force: true });
    // The log (written by the launch that started this daemon) is kept only when it failed.
    if (code === 0) rmSync(options.socketPath.replace(/\.sock$/, ".log"), { force: true });
    process.exit(code);
  };

  const sessions = new Set<ProviderSession>();
  let idleTimer: NodeJS.Timeout | undefined;
  const armIdleTimer = () => {
    if (sessions.size > 0) return;
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => {
      log(`idle for ${options.idleMs} ms; exiting`);
      exit(0);
    }, options.idleMs);
  };

  const serveLaunch = (socket: Socket) => {
    clearTimeout(idleTimer);
    let received = Buffer.alloc(0);
    let session: ProviderSession | undefined;
    const refuse = (reason: string) => {
      log(`launch refused: ${reason}`);
      socket.destroy();
    };
    const onData = (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const end = received.indexOf(0x0a);
      if (end < 0) {
        if (received.length > MAX_LAUNCH_REQUEST_BYTES) refuse("request too large");
        return;
      }
      socket.off("data", onData);
      let launch: LaunchRequest;
      try {
        launch = parseLaunchRequest(received.toString("utf8", 0, end));
      } catch (error) {
        refuse(String(error));
        return;
      }
      const write = (kind: number, text: string) => {
        if (!socket.destroyed) socket.write(encodeFrame(kind, text));
      };
      const started = startSession(provider, launch, {
        stdout: (text) => write(FrameKind.stdout, text),
        stderr: (text) => write(FrameKind.stderr, text),
        end: (code) => {
          write(FrameKind.exit, String(code));
          socket.end();
        },
      });
      session = started;
      sessions.add(started);
    };
    socket.on("data", onData);
    socket.on("error", () => {});
    socket.once("close", () => {
      if (session) {
        session.close();
        sessions.delete(session);
      }
      armIdleTimer();
    });
  };

  const server = createServer(serveLaunch);
  server.on("error", (error) => {
    log(`cannot serve ${options.socketPath}: ${error.message}`);
    exit(1);
  });
  server.listen(options.socketPath, () => {
    // The directory already keeps others out; the socket says so too.
    chmodSync(options.socketPath, 0o600);
    log(`serving ${options.socketPath} (pid ${process.pid})`);
    armIdleTimer();
  });
  process.on("SIGTERM", () => exit(0));
}
