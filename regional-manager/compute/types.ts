// The compute driver interface: the manager's one global protocol for running instances. A
// driver translates it to a datacenter's local way of running VMs (one global ID, a local ID per datacenter: docs/architecture.md).
import type { EventEmitter } from "node:events";
import type { MetadataService } from "../metadata/index.ts";

export type ImageFormat = "raw" | "qcow2";

/** What the manager asks for: one instance of a VM group, booted from a stored image. */
export interface InstanceSpec {
  /** Control-plane instance ID; also the driver's local handle (letters, digits, _ . -). */
  instanceId: string;
  name: string;
  /** The instance's internal DNS name (schemas/internal-names.ts), when the control plane gave one. */
  hostname?: string;
  vmGroup: string;
  /** The catalog's VM group ID (a host scheduler spreads a group's instances by it). */
  vmGroupId?: string;
  /** Anti-affinity: no two instances of the group on one host (drivers that place on hosts). */
  spreadHosts?: boolean;
  region: string;
  datacenter: string;
  image: {
    /** Absolute path of the assembled image file in the manager's store. It is never written. */
    path: string;
    format: ImageFormat;
    /** How the control plane names the image (served to the guest as instance/image). */
    id: string;
  };
  vcpus: number;
  memoryMb: number;
  /** The VM group's metadata key/values, served under instance/attributes/. */
  metadata: Record<string, string>;
  /**
   * The guest's interface on its private network. Its host side is the tap that
   * ../network/ names after the instance and plugs into the network's bridge, which must exist
   * before the guest starts; without one the guest reaches only its metadata.
   */
  networkInterface?: GuestNetworkInterface;
}

export interface GuestNetworkInterface {
  /** The catalog's network ID. */
  network: string;
  /** The network's VXLAN identifier, the same on every host. */
  vni: number;
  /** The instance's IPv4 address on it. */
  address: string;
  /** The network's prefix length: every address of the network is on-link (one segment). */
  prefixLength: number;
  /** The link's MTU (the underlay's less the tunnel's overhead). */
  mtu: number;
  /** The guest's part in its group's endpoints: while it is ready, they may send it connections. */
  endpoints?: GuestEndpoints;
  /**
   * On a host agent: the datacenter's gateway on the network, on its manager's host, which the
   * group's endpoint connections come from (judged by the network's firewall there).
   */
  endpointGateway?: string;
}

export interface GuestEndpoints {
  /** The catalog's VM group ID: a group's instances share its endpoints. */
  group: string;
  /** The datacenter's address on the network, the source endpoint connections come from. */
  gateway: string;
  /** The guest's TCP ports the group exposes. */
  ports: readonly number[];
}

export type InstanceState = "starting" | "running" | "ready" | "stopped" | "failed";

/** The reason of an instance that was created and never started ("stopped" until it is). */
export const CREATED_REASON = "created";

export interface InstanceStatus {
  instanceId: string;
  state: InstanceState;
  /** Why the instance is failed or stopped, in words for the control plane. */
  reason?: string;
  /** The last lines of the serial console, set when the state is failed. */
  consoleTail?: string;
  /** Guest attributes the guest PUT ("namespace/key" → value), e.g. "globalvm/ready". */
  guestAttributes: Record<string, string>;
  pid?: number;
  accelerator?: string;
  /** The datacenter host running the guest, for drivers that place guests on hosts. */
  host?: string;
  spec: InstanceSpec;
}

export interface InstanceStateChange {
  instanceId: string;
  state: InstanceState;
  previous: InstanceState | undefined;
  reason?: string;
  consoleTail?: string;
  at: Date;
  /** The manager recreates the instance by itself (autohealing); `reason` says why. */
  repair?: boolean;
}

export interface ConsoleLine {
  instanceId: string;
  line: string;
  at: Date;
}

export type ComputeDriverEvents = {
  state: [InstanceStateChange];
  console: [ConsoleLine];
  "guest-attribute": [{ instanceId: string; path: string; value: string }];
};

export interface Capacity {
  /** Most vCPUs one instance may have. */
  vcpus: number;
  /** Memory all started instances may use together, in MiB. */
  memoryMb: number;
}

/** What every driver is built from; a driver may take more options of its own. */
export interface DriverOptions {
  /** Where the driver keeps each instance's state, so a restarted manager can reattach. */
  dataDir: string;
  /** Serves each guest its metadata; the driver registers instances with it. */
  metadata: MetadataService;
  capacity: Capacity;
}

export interface ComputeDriver extends EventEmitter<ComputeDriverEvents> {
  readonly kind: string;
  /** Prepares an instance (disk, metadata endpoint) without starting it; its state is "stopped". */
  create(spec: InstanceSpec): Promise<InstanceStatus>;
  /** Boots the instance. Resolves once it runs ("running"); "ready" follows when the guest says so. */
  start(instanceId: string): Promise<InstanceStatus>;
  /** Powers the instance off; graceMs lets the guest shut down before it is ended. */
  stop(instanceId: string, options?: { graceMs?: number }): Promise<InstanceStatus>;
  /** Stops the instance if needed and removes everything it left: process, sockets, disk, metadata. */
  delete(instanceId: string): Promise<void>;
  status(instanceId: string): InstanceStatus;
  list(): InstanceStatus[];
  /** The bounded serial console log (its last bytes). */
  consoleLog(instanceId: string, options?: { tailBytes?: number }): string;
  /** Finds the instances a previous manager process left under dataDir and takes them over. */
  reattach(): Promise<InstanceStatus[]>;
  /** Lets go of every instance without stopping it (a manager shutting down for a restart). */
  detach(): Promise<void>;
  /** Replaces the metadata served to the instance (a value that became known after boot). */
  setMetadata(instanceId: string, metadata: Record<string, string>): Promise<void>;
}

export type ComputeErrorCode =
  | "not-found"
  | "invalid-argument"
  | "capacity-exceeded"
  | "failed-precondition"
  | "internal";

export class ComputeError extends Error {
  override name = "ComputeError";
  readonly code: ComputeErrorCode;
  /** The spec field the error is about, when there is one. */
  readonly field: string | undefined;

  constructor(code: ComputeErrorCode, message: string, field?: string) {
    super(message);
    this.code = code;
    this.field = field;
  }
}
