// Guest networking of a datacenter whose guests run on host agents. Each agent attaches its own
// guests (bridges, tunnels, taps and rules on its machine, as a manager does for its own guests);
// the manager tells every agent, in its sync answers, what an agent cannot know by itself: where
// the other hosts' tunnels end (its own hosts' at once, the rest as the control plane names them)
// and the firewall of each network its guests are on.
// A manager with a guest network of its own (--guest-network-underlay) is also the datacenter's
// gateway: its GuestNetworks carries the endpoints of groups whose guests run on the agents (a
// bridge and tunnel per network, no taps), so a group's exposed port has one address in the
// datacenter however many hosts run its instances. Connections are judged by the network's
// firewall there and cross the tunnel to the guest's host, which lets in what the gateway sends.

import type { ReportedEndpoint } from "../../schemas/endpoints.ts";
import type { HostSyncAnswer } from "../../schemas/hosts.ts";
import type { NetworkFirewalls } from "../network/firewalls.ts";
import type { GuestNetworks, GuestOnNetwork, InstanceNetworking } from "../network/guests.ts";
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
  /** The datacenter's gateway: the manager's own guest network, which offers the endpoints. */
  readonly #gateway: GuestNetworks | undefined;
  /**
   * The underlay addresses the control plane named in its last heartbeat answer; undefined
   * until it has (then the hosts are not told any, and keep the peers their tunnels have).
   */
  #peers: readonly string[] | undefined;
  /** The firewalls and peers the hosts were last told: a sync tells them only of a change. */
  #announced = "";

  /**
   * `firewalls` is the gateway's own when there is one: the networks' firewalls are kept once and
   * apply at the gateway as on the agents.
   */
  constructor(options: {
    registry: HostRegistry;
    firewalls: NetworkFirewalls;
    underlayMtu?: number;
    gateway?: GuestNetworks;
  }) {
    this.#registry = options.registry;
    this.#gateway = options.gateway;
    this.firewalls = options.gateway?.firewalls ?? options.firewalls;
    this.mtu = (options.underlayMtu ?? 1500) - VXLAN_OVERHEAD;
  }

  get offersEndpoints(): boolean {
    return this.#gateway?.offersEndpoints ?? false;
  }

  get onServing(): ((instanceId: string) => void) | undefined {
    return this.#gateway?.onServing;
  }

  set onServing(listener: ((instanceId: string) => void) | undefined) {
    if (this.#gateway) this.#gateway.onServing = listener;
  }

  setPeers(peers: readonly string[]): boolean {
    const next = [...new Set(peers)].sort();
    if (this.#peers !== undefined && next.join(",") === this.#peers.join(",")) return false;
    this.#peers = next;
    return true;
  }

  /**
   * The agents do the work for their guests: they hear of any change in the answer to their next
   * sync. The gateway carries the endpoints of those whose group exposes ports.
   */
  async sync(guests: readonly GuestOnNetwork[]): Promise<void> {
    const networks = [...new Set(guests.map((g) => g.nic.network))].sort();
    const state = JSON.stringify([this.#peers, networks.map((id) => this.firewalls.held(id) ?? null)]);
    if (state !== this.#announced) {
      this.#announced = state;
      this.#registry.announce();
    }
    if (!this.#gateway) return;
    // The gateway's tunnels reach this datacenter's hosts: its endpoints lead only to guests here.
    this.#gateway.setPeers(this.#hostsHere());
    await this.#gateway.sync(
      guests.filter((guest) => guest.nic.endpoints).map((guest) => ({ ...guest, elsewhere: true })),
    );
  }

  /** Without a gateway no endpoints, so nothing waits for a guest's port. */
  serves(instanceId: string, ports: readonly number[]): boolean {
    return this.#gateway?.serves(instanceId, ports) ?? true;
  }

  endpointsOf(group: string, guestPorts: readonly number[]): ReportedEndpoint[] {
    return this.#gateway?.endpointsOf(group, guestPorts) ?? [];
  }

  #hostsHere(): string[] {
    return this.#registry.list().flatMap((r) => r.registration.underlay_address ?? []);
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
    const gateway = this.#gateway ? [this.#gateway.underlayAddress] : [];
    const peers = [...new Set([...this.#peers, ...this.#hostsHere(), ...gateway])]
      .filter((p) => p !== own)
      .sort();
    return { peers, firewalls };
  }
}
