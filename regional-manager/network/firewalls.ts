// The firewall of each network this manager's guests are on, as the control plane last sent it
// (with an instance's spec, or on its own when rules or a source group changed). Kept in a file
// of the data dir, so a restarted manager re-renders the same rules before the control plane
// speaks again, and never has a guest of a known network unguarded.
import { readFileSync } from "node:fs";
import { replaceFileDurably } from "../../common/files.ts";
import type { ManagerNetworkFirewall } from "../../schemas/manager-instances.ts";
import type { NetworkFirewall } from "./spec.ts";

export class NetworkFirewalls {
  readonly #file: string;
  readonly #byNetwork: Map<string, ManagerNetworkFirewall>;
  #writes: Promise<unknown> = Promise.resolve();

  constructor(file: string) {
    this.#file = file;
    this.#byNetwork = new Map(Object.entries(readHeld(file)));
  }

  /** Keeps `firewall` unless a newer revision is held; true when what is held changed. */
  async offer(networkId: string, firewall: ManagerNetworkFirewall): Promise<boolean> {
    const held = this.#byNetwork.get(networkId);
    if (held && held.revision > firewall.revision) return false;
    if (held && JSON.stringify(held) === JSON.stringify(firewall)) return false;
    this.#byNetwork.set(networkId, firewall);
    const snapshot = JSON.stringify(Object.fromEntries(this.#byNetwork));
    const write = this.#writes.then(() => replaceFileDurably(this.#file, snapshot));
    this.#writes = write.catch(() => {});
    await write;
    return true;
  }

  /** What the data plane renders for the network; undefined when it was never told. */
  of(networkId: string): NetworkFirewall | undefined {
    const held = this.#byNetwork.get(networkId);
    if (!held) return undefined;
    return { rules: held.rules, otherwiseAllow: held.otherwise_allow };
  }

  /** The firewall as the control plane sent it (what a manager forwards to its hosts). */
  held(networkId: string): ManagerNetworkFirewall | undefined {
    return this.#byNetwork.get(networkId);
  }

  revisionOf(networkId: string): number | undefined {
    return this.#byNetwork.get(networkId)?.revision;
  }
}

function readHeld(file: string): Record<string, ManagerNetworkFirewall> {
  try {
    return JSON.parse(readFileSync(file, "utf8")) as Record<string, ManagerNetworkFirewall>;
  } catch {
    return {};
  }
}
