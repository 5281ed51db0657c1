// Helpers of the host-agent fault trials (kill-hosts.test.ts): the QEMU guests running on this
// machine for an instance, the hosts a manager has assigned instances to, and a listen port a
// restarted manager can take again (its agents keep the URL they were started with).
import { readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import type { Stack } from "../support/stack.ts";
import { argvOf } from "./trials.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A free loopback port, for a manager that must come back on the same URL after kill -9. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Threads of a process, and whether it is a zombie (an orphaned QEMU not reaped yet). */
function liveThreads(pid: string): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    if (state === "Z" || state === "X") return 0;
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    return Number(/^Threads:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  } catch {
    return 0;
  }
}

export interface RunningGuest {
  pid: number;
  instanceId: string;
  /** The data dir the guest's overlay lives under (`<stack>/<datacenter>-host-<n>`), if labelled. */
  overlay: string | undefined;
}

/**
 * Every QEMU process on this machine running a guest of one of `instanceIds`, found by the guest
 * name the QEMU driver gives it (`-name guest=globalvm-<instance id>`, see command-line.ts). A
 * QEMU forks for each guest connection to the metadata address, and the fork carries QEMU's
 * command line until it execs the relay; it has one thread, a running QEMU several, so a
 * single-threaded one is not a VM (as in trials.ts).
 */
export function runningGuests(instanceIds: readonly string[]): RunningGuest[] {
  const wanted = new Map(instanceIds.map((id) => [`guest=globalvm-${id}`, id]));
  const found: RunningGuest[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = argvOf(entry);
    if (!argv[0]?.includes("qemu-system")) continue;
    const name = argv[argv.indexOf("-name") + 1];
    const instanceId = name === undefined ? undefined : wanted.get(name);
    if (instanceId === undefined) continue;
    if (liveThreads(entry) < 2) continue;
    const label = argv.find((a) => a.includes("opaque=") && a.endsWith("/overlay.qcow2"));
    found.push({
      pid: Number(entry),
      instanceId,
      overlay: label?.slice(label.indexOf("opaque=") + "opaque=".length),
    });
  }
  return found;
}

/** Guests per instance ID (instances without a guest have 0). */
export function guestCounts(instanceIds: readonly string[]): Record<string, RunningGuest[]> {
  const counts: Record<string, RunningGuest[]> = {};
  for (const id of instanceIds) counts[id] = [];
  for (const guest of runningGuests(instanceIds)) counts[guest.instanceId]?.push(guest);
  return counts;
}

/**
 * Polls until every instance has exactly `expected` running guests, at most `timeoutMs`; returns
 * how long it took, or throws naming the guests of each instance that is off (a duplicate VM,
 * a missing one, or one that outlived its deletion).
 */
export async function untilGuestsAre(
  instanceIds: readonly string[],
  expected: number,
  timeoutMs: number,
): Promise<number> {
  const started = Date.now();
  for (;;) {
    const counts = guestCounts(instanceIds);
    const off = Object.entries(counts).filter(([, guests]) => guests.length !== expected);
    if (off.length === 0) return Date.now() - started;
    if (Date.now() - started > timeoutMs) {
      throw new Error(
        `after ${timeoutMs} ms, instances without exactly ${expected} running guest(s): ${JSON.stringify(Object.fromEntries(off))}`,
      );
    }
    await sleep(500);
  }
}

/** The hosts the datacenter's manager has assigned at least one instance to (its hosts.json). */
export function assignedHosts(stack: Stack, datacenter: string): string[] {
  try {
    const persisted = JSON.parse(readFileSync(join(stack.dir, datacenter, "hosts.json"), "utf8")) as {
      hosts: { name: string; assignments: unknown[] }[];
    };
    return persisted.hosts.filter((h) => h.assignments.length > 0).map((h) => h.name);
  } catch {
    return [];
  }
}

/**
 * Follows an operation with long polls (`?wait=20s`) until it is done; a control plane that
 * does not answer for a moment is asked again.
 */
export async function followOperation(stack: Stack, id: string, timeoutMs: number): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const { status, body } = await stack.call("GET", `/v1/operations/${id}?wait=20s`, stack.projectToken);
      if (status === 200 && body.done) return body;
      last = body;
    } catch {
      await sleep(250);
    }
  }
  throw new Error(`operation ${id} did not finish within ${timeoutMs} ms: ${JSON.stringify(last)}`);
}

/** The log lines of the stack's processes that mention one of `words` (for a failure's evidence). */
export function logLinesAbout(stack: Stack, words: readonly string[], max = 60): string {
  const lines: string[] = [];
  for (const file of readdirSync(stack.logsDir).sort()) {
    let text = "";
    try {
      text = readFileSync(join(stack.logsDir, file), "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      if (words.some((w) => line.includes(w))) lines.push(`${file}: ${line.slice(0, 400)}`);
    }
  }
  return lines.slice(-max).join("\n");
}
