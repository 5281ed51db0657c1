// From what a host has (its devices and tunnel peers, as `ip -j -d link` and `bridge -j fdb`
// report them) and what it should have (a HostNetworkSpec), the commands that make it so. Plain
// functions: the executor (linux.ts) observes and runs, this decides. Applying the plan twice does
// nothing the second time, and a restarted manager adopts what it finds under its own names.

import { type DeviceKind, deviceName, type HostNetworkSpec, ownedKind, VXLAN_PORT } from "./spec.ts";

/** One device as the kernel reports it, reduced to what the plan compares. */
export interface ObservedDevice {
  name: string;
  /** The globalvm kind its name says, or undefined for a device globalvm does not own. */
  owned: DeviceKind | undefined;
  /** `bridge`, `vxlan`, `tun`, `veth`, … (from `linkinfo.info_kind`). */
  linkKind: string | undefined;
  up: boolean;
  mtu: number;
  master: string | undefined;
  vxlan?: { vni: number; local: string | undefined; port: number; learning: boolean };
  /** A tap's owner, as ip prints it (a user name, or a uid). */
  tapUser?: string;
}

export interface ObservedHost {
  devices: ReadonlyMap<string, ObservedDevice>;
  /** Per owned VXLAN device: the underlay addresses its all-zeros FDB entries replicate to. */
  floodPeers: ReadonlyMap<string, ReadonlySet<string>>;
}

export interface Step {
  /** argv of the program, without the program. */
  program: "ip" | "bridge" | "sysctl";
  args: string[];
}

const FLOOD_MAC = "00:00:00:00:00:00";

interface IpLinkJson {
  ifname: string;
  flags?: string[];
  mtu?: number;
  master?: string;
  linkinfo?: {
    info_kind?: string;
    info_data?: { id?: number; local?: string; port?: number; learning?: boolean; user?: string | number };
  };
}

interface FdbJson {
  mac?: string;
  ifname?: string;
  dev?: string;
  dst?: string;
}

/** Parses `ip -j -d link show` and `bridge -j fdb show` output. */
export function observeHost(linksJson: string, fdbJson: string): ObservedHost {
  const devices = new Map<string, ObservedDevice>();
  for (const link of JSON.parse(linksJson) as IpLinkJson[]) {
    const kind = link.linkinfo?.info_kind;
    const data = link.linkinfo?.info_data;
    const device: ObservedDevice = {
      name: link.ifname,
      owned: ownedKind(link.ifname),
      linkKind: kind,
      up: (link.flags ?? []).includes("UP"),
      mtu: link.mtu ?? 0,
      master: link.master,
    };
    if (kind === "vxlan" && data) {
      device.vxlan = {
        vni: data.id ?? 0,
        local: data.local,
        port: data.port ?? 0,
        learning: data.learning ?? true,
      };
    }
    if (kind === "tun" && data?.user !== undefined) device.tapUser = String(data.user);
    devices.set(link.ifname, device);
  }
  const floodPeers = new Map<string, Set<string>>();
  for (const entry of JSON.parse(fdbJson) as FdbJson[]) {
    const dev = entry.ifname ?? entry.dev;
    if (!dev || entry.mac !== FLOOD_MAC || !entry.dst || devices.get(dev)?.owned !== "vxlan") continue;
    const peers = floodPeers.get(dev) ?? new Set<string>();
    floodPeers.set(dev, peers);
    peers.add(entry.dst);
  }
  return { devices, floodPeers };
}

interface DesiredDevice {
  name: string;
  kind: DeviceKind;
  mtu: number;
  master: string | undefined;
  vxlan?: { vni: number; local: string };
  ownerUid?: number;
}

function desiredDevices(spec: HostNetworkSpec): DesiredDevice[] {
  const devices: DesiredDevice[] = [];
  for (const network of spec.networks) {
    const bridge = deviceName("bridge", network.id);
    devices.push({ name: bridge, kind: "bridge", mtu: network.mtu, master: undefined });
    devices.push({
      name: deviceName("vxlan", network.id),
      kind: "vxlan",
      mtu: network.mtu,
      master: bridge,
      vxlan: { vni: network.vni, local: spec.underlayAddress },
    });
    for (const port of network.ports) {
      devices.push({
        name: deviceName("tap", port.instanceId),
        kind: "tap",
        mtu: network.mtu,
        master: bridge,
        ...(port.ownerUid !== undefined ? { ownerUid: port.ownerUid } : {}),
      });
    }
  }
  return devices;
}

const LINK_KIND: Record<DeviceKind, string> = { bridge: "bridge", vxlan: "vxlan", tap: "tun" };

/** Whether an existing device can be kept (and adjusted) rather than created again. */
function reusable(
  have: ObservedDevice,
  want: DesiredDevice,
  userNames: ReadonlyMap<number, string>,
): boolean {
  if (have.linkKind !== LINK_KIND[want.kind]) return false;
  if (want.vxlan) {
    const v = have.vxlan;
    if (
      !v ||
      v.vni !== want.vxlan.vni ||
      v.local !== want.vxlan.local ||
      v.port !== VXLAN_PORT ||
      v.learning
    ) {
      return false;
    }
  }
  if (want.kind === "tap") {
    const wantUser = want.ownerUid === undefined ? undefined : String(want.ownerUid);
    const haveUser = have.tapUser;
    const same =
      haveUser === wantUser ||
      (want.ownerUid !== undefined && haveUser !== undefined && userNames.get(want.ownerUid) === haveUser);
    if (!same) return false;
  }
  return true;
}

function createSteps(device: DesiredDevice): Step[] {
  const { name } = device;
  const add: Step =
    device.kind === "bridge"
      ? { program: "ip", args: ["link", "add", name, "type", "bridge"] }
      : device.kind === "vxlan"
        ? {
            program: "ip",
            args: [
              ...["link", "add", name, "type", "vxlan", "id", String(device.vxlan?.vni)],
              ...["local", String(device.vxlan?.local), "dstport", String(VXLAN_PORT), "nolearning"],
            ],
          }
        : {
            program: "ip",
            args: [
              ...["tuntap", "add", "dev", name, "mode", "tap"],
              ...(device.ownerUid !== undefined ? ["user", String(device.ownerUid)] : []),
            ],
          };
  // No address of the host on a guest-facing device, IPv6 link-local included: guests must not
  // reach the host through their network.
  return [add, { program: "ip", args: ["link", "set", "dev", name, "addrgenmode", "none"] }];
}

/** The commands that take `host` to `spec`; empty when it is there already. */
export function planHostNetwork(
  host: ObservedHost,
  spec: HostNetworkSpec,
  /** uid → user name, for comparing a tap's owner as ip prints it. */
  userNames: ReadonlyMap<number, string> = new Map(),
): Step[] {
  const wanted = desiredDevices(spec);
  const wantedByName = new Map(wanted.map((d) => [d.name, d]));
  const deletions: Step[] = [];
  const creations: Step[] = [];
  const adjustments: Step[] = [];
  const present = new Set<string>();

  // Devices of ours that nothing wants any more go first (ports before the bridges they sit in).
  const order: DeviceKind[] = ["tap", "vxlan", "bridge"];
  const stale = [...host.devices.values()]
    .filter((d) => d.owned && !wantedByName.has(d.name))
    .sort((a, b) => order.indexOf(a.owned as DeviceKind) - order.indexOf(b.owned as DeviceKind));
  for (const device of stale) deletions.push({ program: "ip", args: ["link", "del", "dev", device.name] });

  for (const want of wanted) {
    const have = host.devices.get(want.name);
    if (have && reusable(have, want, userNames)) {
      present.add(want.name);
      if (have.mtu !== want.mtu) adjustments.push(setLink(want.name, ["mtu", String(want.mtu)]));
      if (have.master !== want.master) {
        adjustments.push(setLink(want.name, want.master ? ["master", want.master] : ["nomaster"]));
      }
      if (!have.up) adjustments.push(setLink(want.name, ["up"]));
      continue;
    }
    if (have) deletions.push({ program: "ip", args: ["link", "del", "dev", want.name] });
    creations.push(...createSteps(want));
    adjustments.push(
      setLink(want.name, ["mtu", String(want.mtu), ...(want.master ? ["master", want.master] : []), "up"]),
    );
  }

  // Flood entries: one per peer on each tunnel (head-end replication of broadcast and unknown
  // unicast), so any number of datacenters share one segment without multicast on the underlay.
  const floods: Step[] = [];
  for (const network of spec.networks) {
    if (network.peers === undefined) continue;
    const vxlan = deviceName("vxlan", network.id);
    const have = present.has(vxlan) ? (host.floodPeers.get(vxlan) ?? new Set<string>()) : new Set<string>();
    const want = new Set(network.peers);
    for (const peer of want) {
      if (!have.has(peer)) {
        floods.push({ program: "bridge", args: ["fdb", "append", FLOOD_MAC, "dev", vxlan, "dst", peer] });
      }
    }
    for (const peer of have) {
      if (!want.has(peer)) {
        floods.push({ program: "bridge", args: ["fdb", "del", FLOOD_MAC, "dev", vxlan, "dst", peer] });
      }
    }
  }
  return [...deletions, ...creations, ...adjustments, ...floods];
}

function setLink(name: string, settings: string[]): Step {
  return { program: "ip", args: ["link", "set", "dev", name, ...settings] };
}
