// Guest networking of a datacenter whose guests run on host agents. Each agent attaches its own
// guests (bridges, tunnels, taps and rules on its machine, as a manager does for its own guests);
// the manager tells every agent, in its sync answers, what an agent cannot know by itself: where
// the other hosts' tunnels end (its own hosts' at once, the rest as the control plane names them)
// and the firewall of each network its guests are on.

import type { ReportedEndpoint } from "../../schemas/endpoints.ts";
import type { HostSyncAnswer } from "../../schemas/hosts.ts";
import type { NetworkFirewalls } from "../network/firewalls.ts";
import type { GuestOnNetwork, InstanceNetworking } from "../network/guests.ts";
import { VXLAN_OVERHEAD } from "../network/spec.ts";
import type { HostRecord, HostRegistry } from "./registry.ts";

export class HostAgentNetworks implements InstanceNetworking {
  readonly #registry: HostRegistry;
  readonly firewalls: NetworkFirewalls;
  /**
   * What the manager records as a guest's MTU. Each agent gives its guests its own underlay's
   * figure; this one is what the instance reports carry.
   */
  readonly mtu: number;
  /** Endpoints need a host port that leads to the group's guests: not offered on hosts yet. */
  readonly offersEndpoints = false;
  onServing: ((instanceId: string) => void) | undefined;
  /**
   * The underlay addresses the control plane named in its last heartbeat answer; undefined
   * until it has (then the hosts are not told any, and keep the peers their tunnels have).
   */
  #peers: readonly string[] | undefined;
  /** The firewalls and peers the hosts were last told: a sync tells them only of a change. */
  #announced = "";

  constructor(options: { registry: HostRegistry; firewalls: NetworkFirewalls; underlayMtu?: number }) {
    this.#registry = options.registry;
    this.firewalls = options.firewalls;
    this.mtu = (options.underlayMtu ?? 1500) - VXLAN_OVERHEAD;
  }

  setPeers(peers: readonly string[]): boolean {
    const next = [...new Set(peers)].sort();
    if (this.#peers !== undefined && next.join(",") === this.#peers.join(",")) return false;
    this.#peers = next;
    return true;
  }

  /** The agents do the work: they hear of any change in the answer to their next sync. */
  async sync(guests: readonly GuestOnNetwork[]): Promise<void> {
    const networks = [...new Set(guests.map((g) => g.nic.network))].sort();
    const state = JSON.stringify([this.#peers, networks.map((id) => this.firewalls.held(id) ?? null)]);
    if (state === this.#announced) return;
    this.#announced = state;
    this.#registry.announce();
  }

  /** No endpoints here, so nothing waits for a guest's port. */
  serves(): boolean {
    return true;
  }

  endpointsOf(): ReportedEndpoint[] {
    return [];
  }

  /** What a host's sync answer says of networks; undefined for a host that attaches none. */
  answerFor(record: HostRecord): HostSyncAnswer["networks"] {
    const own = record.registration.underlay_address;
    if (!own) return undefined;
    const firewalls: NonNullable<HostSyncAnswer["networks"]>["firewalls"] = {};
    for (const assignment of record.assignments.values()) {
      const network = assignment.network_interface?.network;
      const firewall = network ? this.firewalls.held(network) : undefined;
      if (network && firewall) firewalls[network] = firewall;
    }
    if (this.#peers === undefined) return { firewalls };
    const hostsHere = this.#registry.list().flatMap((r) => r.registration.underlay_address ?? []);
    const peers = [...new Set([...this.#peers, ...hostsHere])].filter((p) => p !== own).sort();
    return { peers, firewalls };
  }
}
