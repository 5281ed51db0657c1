// The executor of host networking on Linux: reads what the kernel has (`ip`, `bridge`), runs the
// plan's commands, and replaces globalvm's nftables tables. The kernel moves every packet; this
// only writes declarative state, so guests keep talking while the manager is down, and a manager
// that starts again reconciles to what it finds instead of starting over.
import { execFile, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { promisify } from "node:util";
import { renderNftRules } from "./nft.ts";
import { observeHost, planHostNetwork, type Step } from "./plan.ts";
import { observeRouting, planRouting } from "./routing.ts";
import type { HostNetworkSpec } from "./spec.ts";

const execFileAsync = promisify(execFile);

export interface LinuxHostNetworkOptions {
  /** A named network namespace (`ip netns`) to work in; default: the manager's own. */
  netns?: string;
}

export class HostNetworkError extends Error {
  readonly command: string[];
  constructor(message: string, command: string[]) {
    super(message);
    this.name = "HostNetworkError";
    this.command = command;
  }
}

export class LinuxHostNetwork {
  readonly #netns: string | undefined;
  /** One reconcile at a time: two overlapping ones would plan from the same observation. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(options: LinuxHostNetworkOptions = {}) {
    this.#netns = options.netns;
  }

  /** Brings the host to `spec` and returns the commands that were needed (none when it was there). */
  reconcile(spec: HostNetworkSpec): Promise<Step[]> {
    const run = this.#queue.then(() => this.#reconcile(spec));
    this.#queue = run.catch(() => {});
    return run;
  }

  async #reconcile(spec: HostNetworkSpec): Promise<Step[]> {
    const [links, fdb] = await Promise.all([
      this.#run(["ip", "-j", "-d", "link", "show"]),
      this.#run(["bridge", "-j", "fdb", "show"]),
    ]);
    const steps = planHostNetwork(observeHost(links, fdb || "[]"), spec, tapOwnerNames(spec));
    for (const step of steps) await this.#run([step.program, ...step.args]);
    // Addresses and routes sit on the bridges, so they are observed once the bridges are right.
    const [addresses, rules, routes] = await Promise.all([
      this.#run(["ip", "-j", "-4", "addr", "show"]),
      this.#run(["ip", "-j", "-4", "rule", "show"]),
      this.#run(["ip", "-j", "-4", "route", "show", "table", "all"]),
    ]);
    const routing = planRouting(observeRouting(addresses, rules, routes), spec);
    for (const step of routing) await this.#run([step.program, ...step.args]);
    steps.push(...routing);
    await this.#run(["nft", "-f", "-"], renderNftRules(spec));
    return steps;
  }

  /**
   * Whether a guest accepts TCP connections on `port`: a connection from the host through the
   * guest's bridge (bound to it, as two networks may hold the same address), closed at once.
   */
  async acceptsTcp(bridge: string, address: string, port: number): Promise<boolean> {
    try {
      await this.#run([
        ...["socat", "-u", "OPEN:/dev/null"],
        `TCP:${address}:${port},connect-timeout=1,so-bindtodevice=${bridge}`,
      ]);
      return true;
    } catch {
      // Refused, timed out, or no route: not serving (yet).
      return false;
    }
  }

  /** Removes everything globalvm owns on this host: what deleting the last network does. */
  clear(): Promise<Step[]> {
    return this.reconcile({ underlayAddress: "0.0.0.0", networks: [] });
  }

  #run(command: string[], input?: string): Promise<string> {
    const argv = this.#netns ? ["ip", "netns", "exec", this.#netns, ...command] : command;
    const [program, ...args] = argv as [string, ...string[]];
    if (input === undefined) {
      return execFileAsync(program, args, { maxBuffer: 64 << 20 }).then(
        ({ stdout }) => stdout,
        (error: { stderr?: string; message: string }) => {
          throw new HostNetworkError(`${argv.join(" ")}: ${(error.stderr || error.message).trim()}`, argv);
        },
      );
    }
    return new Promise((resolve, reject) => {
      const child = spawn(program, args, { stdio: ["pipe", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d) => (stdout += d));
      child.stderr.on("data", (d) => (stderr += d));
      child.on("error", (error) => reject(new HostNetworkError(`${argv.join(" ")}: ${error.message}`, argv)));
      child.on("close", (code) =>
        code === 0
          ? resolve(stdout)
          : reject(new HostNetworkError(`${argv.join(" ")}: ${stderr.trim() || `exit ${code}`}`, argv)),
      );
      child.stdin.end(input);
    });
  }
}

/** ip prints a tap's owner by name when the user exists: map the spec's uids to names. */
function tapOwnerNames(spec: HostNetworkSpec): Map<number, string> {
  const names = new Map<number, string>();
  for (const network of spec.networks) {
    for (const port of network.ports) {
      if (port.ownerUid === undefined || names.has(port.ownerUid)) continue;
      const name = userName(port.ownerUid);
      if (name) names.set(port.ownerUid, name);
    }
  }
  return names;
}

function userName(uid: number): string | undefined {
  // /etc/passwd is where ip looks the name up too (getpwuid).
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const [name, , id] = line.split(":");
      if (name && Number(id) === uid) return name;
    }
  } catch {
    // No passwd file: ip prints the uid, which the plan compares as is.
  }
  return undefined;
}
