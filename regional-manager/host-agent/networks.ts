// A host agent's guest networking: the same GuestNetworks a manager runs for its own guests, over
// this machine's kernel, fed by the manager's sync answers (where the other hosts' tunnels end,
// each network's firewall) and by the guests this agent runs. An agent without an underlay
// address attaches nothing: its guests run isolated, and every method here does nothing.

import { join } from "node:path";
import type { HostAssignment, HostSyncAnswer } from "../../schemas/hosts.ts";
import type { ComputeDriver, GuestNetworkInterface } from "../compute/types.ts";
import { NetworkFirewalls } from "../network/firewalls.ts";
import { GuestNetworks } from "../network/guests.ts";
import { LinuxHostNetwork } from "../network/linux.ts";

export interface AgentNetworkOptions {
  underlayAddress: string;
  underlayMtu?: number;
  netns?: string;
}

export class AgentNetworks {
  readonly #networks: GuestNetworks | undefined;
  readonly #driver: ComputeDriver;

  constructor(options: {
    guestNetwork: AgentNetworkOptions | undefined;
    driver: ComputeDriver;
    dataDir: string;
    /** The owner of the taps: the user QEMU runs as (undefined: this process's). */
    tapOwnerUid: number | undefined;
    log: (line: string) => void;
  }) {
    this.#driver = options.driver;
    const network = options.guestNetwork;
    this.#networks = network
      ? new GuestNetworks({
          host: {
            underlayAddress: network.underlayAddress,
            ...(options.tapOwnerUid !== undefined ? { tapOwnerUid: options.tapOwnerUid } : {}),
          },
          executor: new LinuxHostNetwork(network.netns ? { netns: network.netns } : {}),
          firewalls: new NetworkFirewalls(join(options.dataDir, "network-firewalls.json")),
          ...(network.underlayMtu ? { underlayMtu: network.underlayMtu } : {}),
          log: options.log,
        })
      : undefined;
  }

  /**
   * Brings this host's bridges, tunnels, taps and rules to what its guests need. Before the
   * manager has named the tunnel peers (a restarted agent), the kernel's are left as they are.
   */
  async sync(): Promise<void> {
    if (!this.#networks) return;
    await this.#networks.sync(
      this.#driver.list().flatMap((status) =>
        status.spec.networkInterface
          ? [
              {
                instanceId: status.instanceId,
                nic: status.spec.networkInterface,
                ready: status.state === "ready",
              },
            ]
          : [],
      ),
    );
  }

  /** Takes the manager's word on tunnel peers and firewalls; syncs when either changed. */
  async take(networks: HostSyncAnswer["networks"]): Promise<void> {
    if (!this.#networks || !networks) return;
    let changed = networks.peers !== undefined && this.#networks.setPeers(networks.peers);
    for (const [network, firewall] of Object.entries(networks.firewalls)) {
      if (await this.#networks.firewalls?.offer(network, firewall)) changed = true;
    }
    if (changed) await this.sync();
  }

  /** The guest's NIC: the manager's address for it, this host's MTU. None on a host without networking. */
  interfaceOf(assignment: HostAssignment): { networkInterface?: GuestNetworkInterface } {
    const nic = assignment.network_interface;
    if (!nic || !this.#networks) return {};
    return {
      networkInterface: {
        network: nic.network,
        vni: nic.vni,
        address: nic.address,
        prefixLength: nic.prefix_length,
        mtu: this.#networks.mtu,
        // The agent offers no endpoints: it only lets their connections in from the gateway.
        ...(nic.endpoints ? { endpointGateway: nic.endpoints.gateway } : {}),
      },
    };
  }

  close(): Promise<void> {
    return this.#networks?.close() ?? Promise.resolve();
  }
}
