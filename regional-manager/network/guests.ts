// What this host's networking must be, derived from the guests it runs: one network entry per
// network with a guest here, one port per guest. The kernel state is rebuilt from this on every
// change (and after a restart, from the guests re-adopted), so nothing else has to be remembered.
import type { ReportedEndpoint } from "../../schemas/endpoints.ts";
import type { GuestNetworkInterface } from "../compute/types.ts";
import { type EndpointPorts, endpointKey } from "./endpoints.ts";
import type { NetworkFirewalls } from "./firewalls.ts";
import type { LinuxHostNetwork } from "./linux.ts";
import type { LoopbackRelays } from "./relays.ts";
import {
  deviceName,
  type EndpointSpec,
  guestMac,
  type HostNetworkSpec,
  type NetworkFirewall,
  VXLAN_OVERHEAD,
} from "./spec.ts";

export interface GuestOnNetwork {
  instanceId: string;
  nic: GuestNetworkInterface;
  /** Ready and staying: its group's endpoints may send it new connections. */
  ready: boolean;
  /**
   * It runs on another host of the datacenter (a host agent's) and this host is only its
   * endpoints' gateway: no tap here, its connections cross the network's tunnel.
   */
  elsewhere?: boolean;
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
  /** The host port an endpoint (endpointKey) has; undefined: none (it is left out). */
  endpointPortOf?: (key: string) => number | undefined;
  /** Whether a ready guest was seen accepting connections on a port; default: it is assumed. */
  serving?: (instanceId: string, port: number) => boolean;
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
      ...endpointsField(members, host),
      ...remoteGuestsField(members),
      ports: members
        .filter((m) => !m.elsewhere)
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

/**
 * The network's gateway and endpoints on this host, from its guests that are in a group's
 * endpoints; on a host that offers none (a host agent), the gateway they come from.
 */
function endpointsField(
  members: readonly GuestOnNetwork[],
  host: HostFacts,
): Pick<HostNetworkSpec["networks"][number], "gateway" | "endpoints" | "endpointGateway"> {
  const portOf = host.endpointPortOf;
  if (!portOf) {
    const gateway = members.find((m) => m.nic.endpointGateway)?.nic.endpointGateway;
    return gateway ? { endpointGateway: gateway } : {};
  }
  const exposing = members.filter((m) => m.nic.endpoints);
  const first = exposing[0];
  if (!first?.nic.endpoints) return {};
  const endpoints = new Map<string, EndpointSpec & { backends: string[] }>();
  for (const member of exposing) {
    const part = member.nic.endpoints as NonNullable<GuestNetworkInterface["endpoints"]>;
    for (const guestPort of part.ports) {
      const key = endpointKey(part.group, guestPort);
      const hostPort = portOf(key);
      if (hostPort === undefined) continue;
      const endpoint = endpoints.get(key) ?? { hostPort, protocol: "tcp", guestPort, backends: [] };
      if (member.ready && (host.serving?.(member.instanceId, guestPort) ?? true)) {
        endpoint.backends.push(member.nic.address);
      }
      endpoints.set(key, endpoint);
    }
  }
  return {
    gateway: { address: first.nic.endpoints.gateway, prefixLength: first.nic.prefixLength },
    endpoints: [...endpoints.values()]
      .sort((a, b) => a.hostPort - b.hostPort)
      .map((endpoint) => ({ ...endpoint, backends: endpoint.backends.sort() })),
  };
}

/** The addresses of the guests this host is only the gateway of, sorted. */
function remoteGuestsField(members: readonly GuestOnNetwork[]): { remoteGuests?: string[] } {
  const remote = members.filter((m) => m.elsewhere).map((m) => m.nic.address);
  return remote.length === 0 ? {} : { remoteGuests: remote.sort() };
}

function firewallField(firewall: NetworkFirewall | undefined): { firewall?: NetworkFirewall } {
  return firewall === undefined ? {} : { firewall };
}

function peersField(peers: readonly string[] | undefined): { peers?: string[] } {
  return peers === undefined ? {} : { peers: [...peers] };
}

/**
 * What the instance manager needs of guest networking, wherever the guests run: on this host
 * (GuestNetworks) or on the datacenter's host agents (hosts/host-networks.ts).
 */
export interface InstanceNetworking {
  /** The MTU guests get: the underlay's less the tunnel's overhead. */
  readonly mtu: number;
  /** Each network's firewall, as the control plane last sent it. */
  readonly firewalls: NetworkFirewalls | undefined;
  /** Whether a group's exposed ports can be offered as endpoints here. */
  readonly offersEndpoints: boolean;
  /** Told when a guest is first seen serving an exposed port. */
  onServing: ((instanceId: string) => void) | undefined;
  /** Brings the guests' networking to what `guests` need. */
  sync(guests: readonly GuestOnNetwork[]): Promise<void>;
  /** Takes the peers the control plane names; true when they changed. */
  setPeers(peers: readonly string[]): boolean;
  /** Whether the guest was seen accepting connections on every one of `ports`. */
  serves(instanceId: string, ports: readonly number[]): boolean;
  /** The endpoints of `group` here, as the control plane is told them. */
  endpointsOf(group: string, guestPorts: readonly number[]): ReportedEndpoint[];
}

/** Guest networking of one host: its facts, and the executor that makes the kernel match. */
export class GuestNetworks implements InstanceNetworking {
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

  /** Each endpoint's host port; without it, this host offers no endpoints. */
  readonly #endpointPorts: EndpointPorts | undefined;
  /** The loopback relays of a namespace host. */
  readonly #relays: LoopbackRelays | undefined;
  /** The address endpoints are reported at: the relays' loopback, or the underlay address. */
  readonly #endpointHost: string;
  readonly #log: (line: string) => void;
  /**
   * `instance:port` of ready guests seen accepting connections: only those are an endpoint's
   * backends, so a guest that reports ready before its server listens gets no connection early.
   */
  readonly #serving = new Set<string>();
  readonly #probing = new Set<string>();
  /** Told when a guest is first seen serving an exposed port (its readiness may have changed). */
  onServing: ((instanceId: string) => void) | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  /** The guests of the last sync: a probe that succeeds syncs them again. */
  #guests: readonly GuestOnNetwork[] | undefined;
  static readonly PROBE_INTERVAL_MS = 250;

  constructor(options: {
    host: HostFacts;
    executor: LinuxHostNetwork;
    underlayMtu?: number;
    firewalls?: NetworkFirewalls;
    endpointPorts?: EndpointPorts;
    relays?: { relays: LoopbackRelays; host: string };
    log?: (line: string) => void;
  }) {
    this.#log = options.log ?? (() => {});
    this.#host = options.host;
    this.firewalls = options.firewalls;
    this.#endpointPorts = options.endpointPorts;
    this.#relays = options.relays?.relays;
    this.#endpointHost = options.relays?.host ?? options.host.underlayAddress;
    this.#executor = options.executor;
    this.mtu = (options.underlayMtu ?? 1500) - VXLAN_OVERHEAD;
  }

  get offersEndpoints(): boolean {
    return this.#endpointPorts !== undefined;
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

  /** Brings the host's bridges, tunnels, taps, rules and endpoints to what `guests` need. */
  sync(guests: readonly GuestOnNetwork[]): Promise<void> {
    return this.#enqueue(() => this.#sync(guests));
  }

  /**
   * One sync at a time: two overlapping ones would give a new endpoint its port (and start its
   * loopback relay) twice.
   */
  #enqueue(work: () => Promise<void>): Promise<void> {
    const run = this.#queue.then(work);
    this.#queue = run.catch(() => {});
    return run;
  }

  async #sync(guests: readonly GuestOnNetwork[]): Promise<void> {
    const peers = this.#peers;
    const firewalls = this.firewalls;
    const ports = await this.#settleEndpointPorts(guests);
    this.#trackServing(guests);
    await this.#executor.reconcile(
      hostNetworkSpecOf(guests, {
        ...this.#host,
        peersOf: () => peers,
        ...(firewalls ? { firewallOf: (id: string) => firewalls.of(id) } : {}),
        ...(ports ? { endpointPortOf: (key: string) => ports.get(key) } : {}),
        serving: (instanceId, port) => this.#serving.has(`${instanceId}:${port}`),
      }),
    );
  }

  /**
   * Forgets guests that left `ready`, and probes the ready ones not yet seen serving until they
   * are. The first sync of a manager process adopts the ready guests as serving: they were
   * backends before it restarted, and the kernel kept sending them connections.
   */
  #trackServing(guests: readonly GuestOnNetwork[]): void {
    const first = this.#guests === undefined;
    this.#guests = guests;
    const ready = new Set<string>();
    for (const guest of guests) {
      if (!guest.ready || !guest.nic.endpoints) continue;
      for (const port of guest.nic.endpoints.ports) ready.add(`${guest.instanceId}:${port}`);
    }
    for (const key of this.#serving) if (!ready.has(key)) this.#serving.delete(key);
    for (const key of ready) {
      if (first) this.#serving.add(key);
      if (this.#serving.has(key) || this.#probing.has(key)) continue;
      const guest = guests.find((g) => key.startsWith(`${g.instanceId}:`)) as GuestOnNetwork;
      void this.#probe(key, guest, Number(key.slice(key.lastIndexOf(":") + 1)));
    }
  }

  async #probe(key: string, guest: GuestOnNetwork, port: number): Promise<void> {
    this.#probing.add(key);
    const bridge = deviceName("bridge", guest.nic.network);
    try {
      while (this.#stillReady(guest.instanceId)) {
        if (await this.#executor.acceptsTcp(bridge, guest.nic.address, port)) {
          this.#serving.add(key);
          // The guests as they are when this sync's turn comes, not as they were at the probe.
          await this.#enqueue(() => this.#sync(this.#guests ?? []));
          this.onServing?.(guest.instanceId);
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, GuestNetworks.PROBE_INTERVAL_MS));
      }
    } catch (error) {
      this.#log(`[WARN] endpoints: ${guest.instanceId} port ${port} not added: ${(error as Error).message}`);
    } finally {
      this.#probing.delete(key);
    }
  }

  #stillReady(instanceId: string): boolean {
    return (this.#guests ?? []).some((g) => g.instanceId === instanceId && g.ready);
  }

  /** Whether the guest was seen accepting connections on every one of `ports`. */
  serves(instanceId: string, ports: readonly number[]): boolean {
    return ports.every((port) => this.#serving.has(`${instanceId}:${port}`));
  }

  /** The endpoints of `group` on this host, as the control plane is told them. */
  endpointsOf(group: string, guestPorts: readonly number[]): ReportedEndpoint[] {
    return guestPorts.flatMap((port) => {
      const hostPort = this.#endpointPorts?.portOf(endpointKey(group, port));
      return hostPort === undefined
        ? []
        : [{ port, protocol: "tcp" as const, address: `${this.#endpointHost}:${hostPort}` }];
    });
  }

  async close(): Promise<void> {
    await this.#relays?.close();
  }

  async #settleEndpointPorts(
    guests: readonly GuestOnNetwork[],
  ): Promise<ReadonlyMap<string, number> | undefined> {
    const endpointPorts = this.#endpointPorts;
    if (!endpointPorts) return undefined;
    const wanted = [
      ...new Set(
        guests.flatMap(({ nic: { endpoints } }) =>
          endpoints ? endpoints.ports.map((port) => endpointKey(endpoints.group, port)) : [],
        ),
      ),
    ];
    let ports = await endpointPorts.settle(wanted);
    if (!this.#relays) return ports;
    // A port something else on the machine holds moves once to another; settle again.
    const refused = await this.#relays.sync([...ports.values()]);
    if (refused.length === 0) return ports;
    for (const port of refused) endpointPorts.refuse(port);
    ports = await endpointPorts.settle(wanted);
    await this.#relays.sync([...ports.values()]);
    return ports;
  }
}
