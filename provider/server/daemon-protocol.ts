// What the launcher (daemon-client.ts) and the provider daemon (daemon.ts) share: where the
// daemon listens, who may reach it, which daemon a build may use, and the frames they trade.
//
// Terraform starts the provider three times for one `terraform plan` (schema, validate,
// plan), and each start pays Node's, TLS's and the bundle's start-up. The daemon pays them
// once: each launch connects to it over a unix socket, sends its environment and working
// directory, and relays what its session writes. The socket sits in a directory only this
// user can enter, so no other local user can reach the daemon (and through it this user's
// files or token).

import { createHash } from "node:crypto";
import { lstatSync, mkdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const DAEMON_FLAG = "--globalvm-provider-daemon";

/** Set to 0 (or false, off) to serve every launch in its own process, as before the daemon. */
export const DAEMON_SWITCH = "GLOBALVM_PROVIDER_DAEMON";
/** How long a daemon with no session waits for the next launch before it exits. */
export const DAEMON_IDLE_SECONDS = "GLOBALVM_PROVIDER_DAEMON_IDLE_SECONDS";
export const DEFAULT_IDLE_SECONDS = 600;

/**
 * Read once by Node when a process starts, so a session cannot take them from its launch:
 * the daemon runs with these, and a launch with other values gets a daemon of its own.
 */
export const PROCESS_LEVEL_ENV = [
  "NODE_OPTIONS",
  "NODE_EXTRA_CA_CERTS",
  "NODE_TLS_REJECT_UNAUTHORIZED",
  "SSL_CERT_FILE",
  "SSL_CERT_DIR",
  "TZ",
] as const;

export function daemonEnabled(env: { readonly [name: string]: string | undefined }): boolean {
  const value = env[DAEMON_SWITCH]?.trim().toLowerCase();
  return value !== "0" && value !== "false" && value !== "off";
}

export function idleMilliseconds(env: { readonly [name: string]: string | undefined }): number {
  const seconds = Number(env[DAEMON_IDLE_SECONDS]);
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : DEFAULT_IDLE_SECONDS * 1000;
}

/** `$XDG_RUNTIME_DIR/globalvm-provider` (per user already), else one per user under the temp dir. */
export function daemonDirectory(env: { readonly [name: string]: string | undefined }): string {
  const uid = process.getuid?.() ?? 0;
  return env.XDG_RUNTIME_DIR
    ? join(env.XDG_RUNTIME_DIR, "globalvm-provider")
    : join(tmpdir(), `globalvm-provider-${uid}`);
}

/**
 * Makes the directory if need be and says whether it is private: a real directory (not a
 * link), owned by this user, that nobody else may enter. Otherwise no daemon is used.
 */
export function privateDirectory(dir: string): boolean {
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") return false;
  }
  try {
    const stat = lstatSync(dir);
    return stat.isDirectory() && stat.uid === (process.getuid?.() ?? stat.uid) && (stat.mode & 0o077) === 0;
  } catch {
    return false;
  }
}

/**
 * Which daemon a launch may use: the same executable and program bytes on the same Node with
 * the same process-level settings. Another build (an upgrade, a test fixture) starts its own
 * daemon; an old one exits when it has been idle long enough.
 */
export function buildIdentity(
  files: readonly string[],
  env: { readonly [name: string]: string | undefined },
): string {
  const hash = createHash("sha256");
  for (const file of files) hash.update(readFileSync(file)).update("\0");
  hash.update(`${process.execPath}\0${process.version}`);
  for (const name of PROCESS_LEVEL_ENV) hash.update(`\0${name}=${env[name] ?? ""}`);
  return hash.digest("hex").slice(0, 24);
}

export function daemonSocketPath(dir: string, identity: string): string {
  return join(dir, `${identity}.sock`);
}

/** What a launch sends, as one JSON line, when it connects. */
export interface LaunchRequest {
  env: { [name: string]: string | undefined };
  cwd: string;
}

/** A launch request is a few kilobytes (the environment); anything far larger is not one. */
export const MAX_LAUNCH_REQUEST_BYTES = 1 << 20;

// The daemon's frames to a launch: [kind: 1 byte][length: 4 bytes BE][payload]. Kinds:
// stdout text, stderr text, and exit (payload: the code as text), after which it closes.
export const FrameKind = { stdout: 0x6f, stderr: 0x65, exit: 0x78 } as const;

export function encodeFrame(kind: number, payload: string): Buffer {
  const body = Buffer.from(payload, "utf8");
  const frame = Buffer.allocUnsafe(5 + body.length);
  frame[0] = kind;
  frame.writeUInt32BE(body.length, 1);
  body.copy(frame, 5);
  return frame;
}

/** Splits a byte stream into frames; call with each chunk, it calls back per whole frame. */
export function frameReader(onFrame: (kind: number, payload: string) => void): (chunk: Buffer) => void {
  let pending: Buffer = Buffer.alloc(0);
  return (chunk) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    while (pending.length >= 5) {
      const length = pending.readUInt32BE(1);
      if (pending.length < 5 + length) break;
      onFrame(pending[0] as number, pending.toString("utf8", 5, 5 + length));
      pending = pending.subarray(5 + length);
    }
  };
}
