// The launch's side of the provider daemon: connect to this build's daemon (starting it if
// none answers), send this launch's environment and working directory, and relay what the
// session writes to this process's stdout and stderr until it says exit. Anything that
// keeps the daemon from serving before the handshake line arrives is answered by serving
// in this process instead (launch.ts), so the daemon can only make a launch faster.

import { closeSync, openSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import { join } from "node:path";
import {
  buildIdentity,
  DAEMON_FLAG,
  daemonDirectory,
  daemonEnabled,
  daemonSocketPath,
  FrameKind,
  frameReader,
  idleMilliseconds,
  type LaunchRequest,
  PROCESS_LEVEL_ENV,
  privateDirectory,
} from "./daemon-protocol.ts";

const CONNECT_RETRY_MS = 10;
const START_TIMEOUT_MS = 5_000;

export interface DaemonLaunch {
  socketPath: string;
  /** The daemon's log, next to its socket. */
  logPath: string;
  /** The executable, which the daemon is started as. */
  launcher: string;
  idleMs: number;
}

/** Where this launch's daemon is, or null when the daemon is switched off or unsafe here. */
export function daemonLaunchFor(
  files: { launcher: string; program: string },
  env: { readonly [name: string]: string | undefined },
): DaemonLaunch | null {
  if (!daemonEnabled(env)) return null;
  const dir = daemonDirectory(env);
  if (!privateDirectory(dir)) return null;
  const identity = buildIdentity([files.launcher, files.program], env);
  return {
    socketPath: daemonSocketPath(dir, identity),
    logPath: join(dir, `${identity}.log`),
    launcher: files.launcher,
    idleMs: idleMilliseconds(env),
  };
}

function connectOnce(socketPath: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    socket.once("connect", () => {
      socket.off("error", reject);
      resolve(socket);
    });
    socket.once("error", reject);
  });
}

/** The daemon runs with only what a process needs, never the launch's token or certificate. */
function daemonEnvironment(env: { readonly [name: string]: string | undefined }): NodeJS.ProcessEnv {
  const kept: NodeJS.ProcessEnv = {};
  for (const name of ["PATH", "HOME", "LANG", "XDG_RUNTIME_DIR", "TMPDIR", ...PROCESS_LEVEL_ENV]) {
    if (env[name] !== undefined) kept[name] = env[name];
  }
  return kept;
}

async function startDaemon(launch: DaemonLaunch): Promise<void> {
  // Loaded here: most launches find the daemon running.
  const { spawn } = await import("node:child_process");
  const logFd = openSync(launch.logPath, "a", 0o600);
  try {
    spawn(
      process.execPath,
      [launch.launcher, `${DAEMON_FLAG}=${launch.socketPath}`, `--idle-ms=${launch.idleMs}`],
      {
        detached: true,
        stdio: ["ignore", logFd, logFd],
        cwd: "/",
        env: daemonEnvironment(process.env),
      },
    ).unref();
  } finally {
    closeSync(logFd);
  }
}

export async function connectToDaemon(launch: DaemonLaunch): Promise<Socket> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let started = false;
  for (;;) {
    try {
      return await connectOnce(launch.socketPath);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "ENOENT" && code !== "ECONNREFUSED") throw error;
      if (Date.now() > deadline) throw new Error(`no provider daemon answered on ${launch.socketPath}`);
      if (!started) {
        started = true;
        await startDaemon(launch);
      }
      await new Promise((resolve) => setTimeout(resolve, CONNECT_RETRY_MS));
    }
  }
}

/**
 * Relays the session to this process. Resolves, having written nothing, when the daemon goes
 * away before the handshake line (serve here instead); exits the process when the session ends.
 */
export function relaySession(socket: Socket, request: LaunchRequest): Promise<void> {
  return new Promise((resolve) => {
    let handshakeSent = false;
    let exitCode: number | undefined;
    const buffered: string[] = [];
    socket.on(
      "data",
      frameReader((kind, payload) => {
        if (kind === FrameKind.stdout) {
          handshakeSent = true;
          process.stdout.write(payload);
          // Whatever the session logged before its handshake belongs to it too.
          for (const line of buffered.splice(0)) process.stderr.write(line);
        } else if (kind === FrameKind.stderr) {
          if (handshakeSent) process.stderr.write(payload);
          else buffered.push(payload);
        } else if (kind === FrameKind.exit) {
          exitCode = Number(payload) || 0;
        }
      }),
    );
    socket.on("error", () => {});
    socket.once("close", () => {
      if (exitCode !== undefined) {
        for (const line of buffered.splice(0)) process.stderr.write(line);
        process.exit(exitCode);
      }
      if (!handshakeSent) {
        resolve();
        return;
      }
      process.stderr.write("the provider daemon went away during the session\n");
      process.exit(1);
    });
    socket.write(`${JSON.stringify(request)}\n`);
  });
}
