// What this host's networking must be, derived from the guests it runs: one network entry per
// network with a guest here, one port per guest. The kernel state is rebuilt from this on every
// change (and after a restart, from the guests re-adopted), so nothing else has to be remembered.
import type { GuestNetworkInterface } from "../compute/types.ts";
import type { NetworkFirewalls } from "./firewalls.ts";
import type { LinuxHostNetwork } from "./linux.ts";
import { guestMac, type HostNetworkSpec, type NetworkFirewall, VXLAN_OVERHEAD } from "./spec.ts";

export interface GuestOnNetwork {
  instanceId: string;
  nic: GuestNetworkInterface;
}

export interface HostFacts {
  /** This host's address on the underlay, where the other datacenters' tunnels arrive. */
  underlayAddress: string;
  /** Owner of every tap: the user QEMU runs as (undefined when QEMU runs as this process's user). */
  tapOwnerUid?: number;
  /** Underlay addresses of the other hosts with guests of a network; undefined: not known yet. */
  peersOf?: (networkId: string) => readonly string[] | undefined;
  /** A network's firewall; undefined: not known, its guests are not filtered. */
  firewallOf?: (networkId: string) => NetworkFirewall | undefined;
}

export function hostNetworkSpecOf(guests: readonly GuestOnNetwork[], host: HostFacts): HostNetworkSpec {
  const byNetwork = new Map<string, GuestOnNetwork[]>();
  for (const guest of guests) {
    const members = byNetwork.get(guest.nic.network) ?? [];
    members.push(guest);
    byNetwork.set(guest.nic.network, members);
  }
  const networks = [...byNetwork.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([id, members]) => ({
      id,
      vni: (members[0] as GuestOnNetwork).nic.vni,
      mtu: Math.min(...members.map((m) => m.nic.mtu)),
      ...peersField(host.peersOf ? host.peersOf(id) : []),
      ...firewallField(host.firewallOf?.(id)),
      ports: members
        .sort((a, b) => a.instanceId.localeCompare(b.instanceId))
        .map((m) => ({
          instanceId: m.instanceId,
          mac: guestMac(m.instanceId),
          address: m.nic.address,
          ...(host.tapOwnerUid !== undefined ? { ownerUid: host.tapOwnerUid } : {}),
        })),
    }));
  return { underlayAddress: host.underlayAddress, networks };
}

function firewallField(firewall: NetworkFirewall | undefined): { firewall?: NetworkFirewall } {
  return firewall === undefined ? {} : { firewall };
}

function peersField(peers: readonly string[] | undefined): { peers?: string[] } {
  return peers === undefined ? {} : { peers: [...peers] };
}

/** Guest networking of one host: its facts, and the executor that makes the kernel match. */
export class GuestNetworks {
  readonly #host: HostFacts;
  readonly #executor: LinuxHostNetwork;
  /**
   * The other datacenters' underlay addresses, as the control plane last told them; undefined
   * until it has (a restarted manager keeps the tunnels' peers it finds until then).
   */
  #peers: readonly string[] | undefined;
  /** The MTU guests get: the underlay's less the tunnel's overhead. */
  readonly mtu: number;

  /** Each network's firewall, as the control plane last sent it. */
  readonly firewalls: NetworkFirewalls | undefined;

  constructor(options: {
    host: HostFacts;
    executor: LinuxHostNetwork;
    underlayMtu?: number;
    firewalls?: NetworkFirewalls;
  }) {
    this.#host = options.host;
    this.firewalls = options.firewalls;
    this.#executor = options.executor;
    this.mtu = (options.underlayMtu ?? 1500) - VXLAN_OVERHEAD;
  }

  get underlayAddress(): string {
    return this.#host.underlayAddress;
  }

  /** Takes the peers the control plane names; true when they changed (the host needs a sync). */
  setPeers(peers: readonly string[]): boolean {
    const next = [...new Set(peers)].filter((p) => p !== this.#host.underlayAddress).sort();
    if (this.#peers !== undefined && next.join(",") === this.#peers.join(",")) return false;
    this.#peers = next;
    return true;
  }

  /** Brings the host's bridges, tunnels, taps and rules to what `guests` need. */
  async sync(guests: readonly GuestOnNetwork[]): Promise<void> {
    const peers = this.#peers;
    const firewalls = this.firewalls;
    await this.#executor.reconcile(
      hostNetworkSpecOf(guests, {
        ...this.#host,
        peersOf: () => peers,
        ...(firewalls ? { firewallOf: (id: string) => firewalls.of(id) } : {}),
      }),
    );
  }
}
