// Facts about host processes, read from /proc: whether a pid is still our QEMU.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { escapeOptionValue } from "./command-line.ts";

/** Alive and not a zombie (an orphaned QEMU may linger as one until its new parent reaps it). */
export function isProcessRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The state follows the parenthesised command name, which may itself contain spaces.
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/**
 * Whether pid is the QEMU of the instance in `instanceDir`: a pid recorded before a restart may
 * since have been reused by an unrelated process, so the command line must label one of its
 * descriptors as the instance's own overlay (see command-line.ts).
 */
export function isInstanceProcess(pid: number, instanceDir: string): boolean {
  if (!isProcessRunning(pid)) return false;
  const label = `opaque=${escapeOptionValue(join(instanceDir, "overlay.qcow2"))}`;
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    return argv.some((argument) => argument.endsWith(label));
  } catch {
    return false;
  }
}

/** Every running process whose command line names this instance's overlay (a QEMU whose pid went unrecorded). */
export function instanceProcesses(instanceDir: string): number[] {
  const found: number[] = [];
  for (const name of readdirSync("/proc")) {
    const pid = Number(name);
    if (Number.isInteger(pid) && pid !== process.pid && isInstanceProcess(pid, instanceDir)) found.push(pid);
  }
  return found;
}
