// What one host's guest networking should look like, and the names of the kernel objects that
// carry it. Every object globalvm creates on a host is named from the catalog ID it serves, with a
// prefix of its own, so a restarted manager recognizes its bridges, tunnels and taps (and only
// those) without any state of its own: the kernel is the record.
import { createHash } from "node:crypto";

/** The part of a host's networking that globalvm owns: one entry per network with guests here. */
export interface HostNetworkSpec {
  /** This host's address on the underlay, the local end of every tunnel. */
  underlayAddress: string;
  networks: readonly NetworkSpec[];
}

export interface NetworkSpec {
  /** The catalog's network ID. */
  id: string;
  /** The VXLAN network identifier of the network, the same on every host (1 to 2^24 − 1). */
  vni: number;
  /** Guest-facing MTU: the underlay's MTU less VXLAN's 50 bytes, so nothing is fragmented. */
  mtu: number;
  /**
   * Underlay addresses of the other hosts with guests of this network (head-end replication).
   * Undefined while they are not known (a manager that just restarted, before the control plane
   * answered): the tunnel's flood entries are then left as the kernel has them, so traffic to
   * other datacenters does not stop while the manager is away.
   */
  peers?: readonly string[];
  ports: readonly PortSpec[];
  /**
   * What may reach the network's guests on this host. Undefined while the control plane has
   * not said (a network only a test builds): its guests are then not filtered.
   */
  firewall?: NetworkFirewall;
  /**
   * This host's own place on the network, present while the network has endpoints here: the
   * source endpoint traffic reaches guests from (and the only address the host ever has on a
   * guest-facing device).
   */
  gateway?: { address: string; prefixLength: number };
  /** Ports of this host's underlay address that lead to guests of this network. */
  endpoints?: readonly EndpointSpec[];
  /**
   * Addresses of the network's guests on other hosts of the datacenter that this host's
   * endpoints lead to: this host is the datacenter's gateway (a manager whose guests run on host
   * agents). They are judged by the network's firewall here, as guests on this host are, and
   * reached through the network's tunnel.
   */
  remoteGuests?: readonly string[];
  /**
   * The datacenter's gateway address on this network when it is on another host (this host is a
   * host agent): endpoint connections reach this host's guests from it, already judged by the
   * network's firewall there, with the client as the source.
   */
  endpointGateway?: string;
}

/** One exposed port of a VM group, as a host carries it. */
export interface EndpointSpec {
  /** The port on the host's underlay address. */
  hostPort: number;
  protocol: "tcp";
  /** The port on the guests. */
  guestPort: number;
  /**
   * Addresses of the group's ready guests this host sends connections to (its own, or, on a
   * gateway, those on the datacenter's other hosts), in a stable order; empty: refused.
   */
  backends: readonly string[];
}

/** A network's ingress rules, in evaluation order, with their sources resolved to address blocks. */
export interface NetworkFirewall {
  rules: readonly FirewallRuleSpec[];
  /** Sources a packet no rule matches is accepted from; anything else is dropped. */
  otherwiseAllow: readonly string[];
}

export interface FirewallRuleSpec {
  action: "allow" | "deny";
  protocol: "tcp" | "udp" | "icmp" | "all";
  /** `80` or `8000-8080`; empty: every port (tcp and udp only). */
  ports: readonly string[];
  /** IPv4 blocks; a rule with none matches nothing. */
  sources: readonly string[];
}

/** One guest's interface on a network. */
export interface PortSpec {
  /** The catalog's instance ID. */
  instanceId: string;
  mac: string;
  /** The instance's IPv4 address; the only source address its port accepts. */
  address: string;
  /** The uid allowed to open the tap (QEMU's user), when QEMU does not run as root. */
  ownerUid?: number;
}

export const VXLAN_PORT = 4789;
/** Bytes VXLAN adds to a guest's frame on an IPv4 underlay (outer Ethernet excluded). */
export const VXLAN_OVERHEAD = 50;

/** Prefixes of the devices globalvm owns; nothing else on a host is ever changed. */
export const DEVICE_PREFIX = { bridge: "gvb", vxlan: "gvx", tap: "gvt" } as const;
export type DeviceKind = keyof typeof DEVICE_PREFIX;

// Linux interface names hold at most 15 bytes: a 3-letter prefix and 12 characters of hash.
const NAME_HASH_CHARS = 12;

function shortHash(id: string): string {
  return createHash("sha256")
    .update(id)
    .digest("base64url")
    .replaceAll(/[-_]/g, "0")
    .slice(0, NAME_HASH_CHARS);
}

export function deviceName(kind: DeviceKind, id: string): string {
  return `${DEVICE_PREFIX[kind]}${shortHash(id)}`;
}

/** Which kind of globalvm device a name is, or undefined for a device globalvm does not own. */
export function ownedKind(name: string): DeviceKind | undefined {
  if (name.length !== 3 + NAME_HASH_CHARS) return undefined;
  for (const [kind, prefix] of Object.entries(DEVICE_PREFIX) as [DeviceKind, string][]) {
    if (name.startsWith(prefix)) return kind;
  }
  return undefined;
}

/**
 * A stable MAC for an instance: locally administered, unicast, derived from its ID. Guests on one
 * segment need distinct MACs (QEMU's default is the same for every guest).
 */
export function guestMac(instanceId: string): string {
  const bytes = createHash("sha256").update(`mac:${instanceId}`).digest().subarray(0, 6);
  // 0x02: locally administered; clearing 0x01 keeps it unicast.
  bytes[0] = ((bytes[0] ?? 0) & 0xfc) | 0x02;
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(":");
}
