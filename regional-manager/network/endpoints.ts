// Which port of this host each endpoint has. An endpoint is one exposed port of one VM group; its
// host port must stay the same for as long as the group exposes it (it is in the group's API
// answer and in Terraform state), across manager restarts: the assignments are kept in a file of
// the data dir. The decision is the plain assignPorts; the class keeps and persists it.
import { readFileSync } from "node:fs";
import { replaceFileDurably } from "../../common/files.ts";

/** Kubernetes' NodePort range: ports no common service listens on. */
export const DEFAULT_ENDPOINT_PORTS = { from: 30_000, to: 32_767 } as const;

export interface PortRange {
  from: number;
  to: number;
}

/** An endpoint's key: its group and the guest port it exposes. */
export function endpointKey(group: string, port: number): string {
  return `${group}/tcp/${port}`;
}

/**
 * The host port of every wanted endpoint: the one it had, or the lowest free one of `range`
 * (not held by another endpoint, not `unusable`). Endpoints no longer wanted let theirs go.
 * A wanted endpoint is left out when the range is used up.
 */
export function assignPorts(
  held: ReadonlyMap<string, number>,
  wanted: readonly string[],
  range: PortRange,
  unusable: ReadonlySet<number> = new Set(),
): Map<string, number> {
  const next = new Map<string, number>();
  for (const key of wanted) {
    const port = held.get(key);
    if (port !== undefined && !unusable.has(port)) next.set(key, port);
  }
  const taken = new Set(next.values());
  let candidate = range.from;
  for (const key of [...wanted].sort()) {
    if (next.has(key)) continue;
    while (candidate <= range.to && (taken.has(candidate) || unusable.has(candidate))) candidate++;
    if (candidate > range.to) break;
    next.set(key, candidate);
    taken.add(candidate);
  }
  return next;
}

export class EndpointPorts {
  readonly #file: string;
  readonly #range: PortRange;
  #held: Map<string, number>;
  /** Ports found in use by something else on this host: never given again by this process. */
  readonly #unusable = new Set<number>();
  #writes: Promise<unknown> = Promise.resolve();

  constructor(file: string, range: PortRange = DEFAULT_ENDPOINT_PORTS) {
    this.#file = file;
    this.#range = range;
    this.#held = new Map(Object.entries(readHeld(file)));
  }

  /** Gives the wanted endpoints their ports (and takes them from the others); persists a change. */
  async settle(wanted: readonly string[]): Promise<ReadonlyMap<string, number>> {
    const next = assignPorts(this.#held, wanted, this.#range, this.#unusable);
    if (!sameEntries(next, this.#held)) {
      this.#held = next;
      const snapshot = JSON.stringify(Object.fromEntries(next));
      const write = this.#writes.then(() => replaceFileDurably(this.#file, snapshot));
      this.#writes = write.catch(() => {});
      await write;
    }
    return this.#held;
  }

  /** Marks a port something else holds, so the next settle moves its endpoint elsewhere. */
  refuse(port: number): void {
    this.#unusable.add(port);
  }

  portOf(key: string): number | undefined {
    return this.#held.get(key);
  }
}

function sameEntries(a: ReadonlyMap<string, number>, b: ReadonlyMap<string, number>): boolean {
  return a.size === b.size && [...a].every(([key, port]) => b.get(key) === port);
}

function readHeld(file: string): Record<string, number> {
  try {
    return JSON.parse(readFileSync(file, "utf8")) as Record<string, number>;
  } catch {
    return {};
  }
}
