// The manager's side of running instances for the control plane: it turns a spec into a
// running guest (pulling the image version first when this datacenter lacks it), keeps the
// control plane told of every state change and guest attribute, and knows how much capacity
// is left. HTTP lives in app.ts; this class is what the routes call.

import type { ReportedEndpoint } from "../../schemas/endpoints.ts";
import type {
  InstanceReport,
  ManagerInstanceSpec,
  ManagerInstanceStatus,
  ManagerNetworkFirewall,
  ReportedInstanceState,
} from "../../schemas/manager-instances.ts";
import type { ComputeDriver, InstanceStateChange, InstanceStatus } from "../compute/index.ts";
import { ComputeError, CREATED_REASON } from "../compute/index.ts";
import type { GuestNetworkInterface } from "../compute/types.ts";
import type { InstanceNetworking } from "../network/guests.ts";
import type { ImageStore, VersionRecord } from "../store/image-store.ts";
import { boundReport, essentialReport, jsonBytes } from "./report-bounds.ts";

export interface InstanceReporter {
  reportInstance(instanceId: string, report: InstanceReport): Promise<void>;
}

export interface InstanceManagerOptions {
  driver: ComputeDriver;
  store: ImageStore;
  region: string;
  datacenter: string;
  /** Resolves once the version is available in the local store (pulling it if needed). */
  ensureImageVersion(imageId: string, version: number): Promise<VersionRecord>;
  reporter: InstanceReporter;
  /** What the datacenter offers in total (with host agents: what its up hosts offer now). */
  capacity: () => { vcpus: number; memoryMb: number };
  log: (line: string) => void;
  /** Bytes of console sent with each state report. */
  reportConsoleBytes?: number;
  /**
   * The guests' networking: this host's, when the manager may change the host's network (root
   * or CAP_NET_ADMIN), or its host agents'. Guests with a network in their spec get a NIC on it
   * and report its address. Without it guests boot with their metadata link only.
   */
  guestNetworks?: InstanceNetworking;
  /**
   * How long a guest that leaves its group's endpoints (deleted, stopped) keeps running after new
   * connections stop reaching it, so the ones it is serving can finish. Default 1 s.
   */
  endpointDrainMs?: number;
}

const DEFAULT_ENDPOINT_DRAIN_MS = 1000;

/** An instance whose image version is still on its way: not yet known to the driver. */
interface PendingInstance {
  spec: ManagerInstanceSpec;
  state: "transferring-image" | "failed";
  reason: string | null;
}

const ACTIVE: readonly string[] = ["starting", "running", "ready"];

export class InstanceManager {
  readonly #options: InstanceManagerOptions;
  readonly #pending = new Map<string, PendingInstance>();
  /** Per instance, the tail of its chain of reports, so they reach the control plane in order. */
  readonly #reports = new Map<string, Promise<void>>();
  /**
   * Per instance, the queued report a guest attribute write made that is not sent yet: later
   * writes update it instead of queuing one report (with every attribute) per write.
   */
  readonly #unsentAttributeReports = new Map<string, { report: InstanceReport }>();
  /** Instances whose guest is being created and started right now. */
  readonly #booting = new Map<string, Promise<void>>();
  /** Instances being stopped or deleted: out of their group's endpoints whatever their state. */
  readonly #leaving = new Set<string>();
  readonly #onState = (change: InstanceStateChange) => this.#stateChanged(change);
  readonly #onAttribute = (write: { instanceId: string }) => this.#report(write.instanceId);

  constructor(options: InstanceManagerOptions) {
    this.#options = options;
    options.driver.on("state", this.#onState);
    options.driver.on("guest-attribute", this.#onAttribute);
    if (options.guestNetworks) options.guestNetworks.onServing = (id) => this.#report(id);
  }

  /** Takes over the instances a previous manager process left running and tells the control plane. */
  async reattach(): Promise<InstanceStatus[]> {
    const found = await this.#options.driver.reattach();
    // The kernel kept carrying their traffic; a sync re-adopts it (and removes what no guest needs).
    await this.#syncNetworks();
    for (const status of found) this.#report(status.instanceId);
    // This manager creates an instance only to start it, setting up its network in between: one
    // found created and never started was cut off there by the restart. Nothing else would start
    // it (the control plane waits for it to get ready, and a stopped instance is not asked again).
    for (const status of found) {
      if (status.state !== "stopped" || status.reason !== CREATED_REASON) continue;
      this.#options.log(
        `instance ${status.instanceId} was created but not started before a restart: starting it`,
      );
      // A start that fails leaves the instance failed, which the driver reports.
      this.#options.driver.start(status.instanceId).catch((error: unknown) => {
        this.#options.log(
          `[WARN] instance ${status.instanceId}: ${error instanceof Error ? error.message : error}`,
        );
      });
    }
    return found;
  }

  /** Lets go of the instances without stopping them (they outlive this manager process). */
  async detach(): Promise<void> {
    this.#options.driver.off("state", this.#onState);
    this.#options.driver.off("guest-attribute", this.#onAttribute);
    await this.#options.driver.detach();
    await Promise.allSettled([...this.#reports.values()]);
  }

  /**
   * Creates and starts an instance; a second call for the same instance returns its status
   * (and starts it again if it is stopped or failed). `created` is false when the instance
   * waits for its image version, which is then pulled in the background.
   */
  async createAndStart(
    spec: ManagerInstanceSpec,
  ): Promise<{ status: ManagerInstanceStatus; created: boolean }> {
    const id = spec.instance_id;
    // A second request while the guest is being created (its image just arrived) waits for
    // that boot instead of starting a second guest for the same instance.
    const booting = this.#booting.get(id);
    if (booting) {
      await booting.catch(() => {});
      return { status: this.status(id), created: false };
    }
    const pending = this.#pending.get(id);
    if (pending?.state === "transferring-image") return { status: this.status(id), created: false };
    const existing = this.#known(id);
    if (existing) {
      if (existing.state === "stopped" || existing.state === "failed") await this.#options.driver.start(id);
      return { status: this.status(id), created: false };
    }
    this.#checkCapacity(spec);
    const held = this.#options.store.getVersion(spec.image_id, spec.image_version);
    if (held?.state === "available" && held.localId) {
      this.#pending.delete(id);
      await this.#bootOnce(spec, held);
      return { status: this.status(id), created: true };
    }
    this.#pending.set(id, { spec, state: "transferring-image", reason: null });
    this.#report(id);
    void this.#pullThenBoot(spec);
    return { status: this.status(id), created: false };
  }

  status(instanceId: string): ManagerInstanceStatus {
    const known = this.#known(instanceId);
    if (known) {
      const spec = known.spec;
      const { state, reason } = this.#readiness(
        instanceId,
        known.state,
        known.reason ?? null,
        spec.networkInterface,
      );
      return {
        instance_id: instanceId,
        state,
        reason,
        guest_attributes: known.guestAttributes,
        vcpus: spec.vcpus,
        memory_mb: spec.memoryMb,
        image_id: spec.image.id,
        image_version: this.#versionOf(spec.image.path),
        pid: known.pid ?? null,
      };
    }
    const pending = this.#pending.get(instanceId);
    if (!pending) throw new ComputeError("not-found", `no instance ${instanceId} on this manager`);
    return {
      instance_id: instanceId,
      state: pending.state,
      reason: pending.reason,
      guest_attributes: {},
      vcpus: pending.spec.vcpus,
      memory_mb: pending.spec.memory_mb,
      image_id: pending.spec.image_id,
      image_version: pending.spec.image_version,
      pid: null,
    };
  }

  async stop(instanceId: string): Promise<ManagerInstanceStatus> {
    if (!this.#known(instanceId)) {
      if (this.#pending.has(instanceId))
        throw new ComputeError("failed-precondition", `instance ${instanceId} has not started yet`);
      throw new ComputeError("not-found", `no instance ${instanceId} on this manager`);
    }
    await this.#withdrawFromEndpoints(instanceId);
    try {
      await this.#options.driver.stop(instanceId, { graceMs: 0 });
    } finally {
      this.#leaving.delete(instanceId);
    }
    return this.status(instanceId);
  }

  /** Removes the instance and everything it left (process, sockets, overlay, metadata listener). */
  async delete(instanceId: string): Promise<void> {
    const wasPending = this.#pending.delete(instanceId);
    const known = this.#known(instanceId);
    if (known) {
      await this.#withdrawFromEndpoints(instanceId);
      try {
        await this.#options.driver.delete(instanceId);
      } finally {
        this.#leaving.delete(instanceId);
      }
    } else if (!wasPending) throw new ComputeError("not-found", `no instance ${instanceId} on this manager`);
    if (known?.spec.networkInterface) await this.#syncNetworks();
  }

  /**
   * Before a guest in its group's endpoints goes: no new connection is sent to it from now on,
   * and the ones it serves get a moment to finish (a rolling update or a resize drops none).
   */
  async #withdrawFromEndpoints(instanceId: string): Promise<void> {
    const known = this.#known(instanceId);
    if (!known?.spec.networkInterface?.endpoints || this.#leaving.has(instanceId)) return;
    this.#leaving.add(instanceId);
    if (known.state !== "ready") return;
    await this.#syncNetworks();
    await new Promise((resolve) =>
      setTimeout(resolve, this.#options.endpointDrainMs ?? DEFAULT_ENDPOINT_DRAIN_MS),
    );
  }

  async setMetadata(instanceId: string, metadata: Record<string, string>): Promise<ManagerInstanceStatus> {
    const pending = this.#pending.get(instanceId);
    if (pending) pending.spec = { ...pending.spec, metadata: { ...metadata } };
    else if (this.#known(instanceId)) await this.#options.driver.setMetadata(instanceId, metadata);
    else throw new ComputeError("not-found", `no instance ${instanceId} on this manager`);
    return this.status(instanceId);
  }

  consoleLog(instanceId: string, tailBytes: number): string {
    if (this.#known(instanceId)) return this.#options.driver.consoleLog(instanceId, { tailBytes });
    if (this.#pending.has(instanceId)) return "";
    throw new ComputeError("not-found", `no instance ${instanceId} on this manager`);
  }

  /** Capacity not claimed by started or starting instances, for the heartbeat. */
  free(): { vcpus: number; memoryMb: number } {
    const used = this.#used();
    const capacity = this.#options.capacity();
    return {
      vcpus: Math.max(0, capacity.vcpus - used.vcpus),
      memoryMb: Math.max(0, capacity.memoryMb - used.memoryMb),
    };
  }

  #used(): { vcpus: number; memoryMb: number } {
    let vcpus = 0;
    let memoryMb = 0;
    for (const status of this.#options.driver.list()) {
      if (!ACTIVE.includes(status.state)) continue;
      vcpus += status.spec.vcpus;
      memoryMb += status.spec.memoryMb;
    }
    for (const pending of this.#pending.values()) {
      if (pending.state !== "transferring-image") continue;
      vcpus += pending.spec.vcpus;
      memoryMb += pending.spec.memory_mb;
    }
    return { vcpus, memoryMb };
  }

  #checkCapacity(spec: ManagerInstanceSpec): void {
    const free = this.free();
    const capacity = this.#options.capacity();
    if (spec.memory_mb > free.memoryMb) {
      throw new ComputeError(
        "capacity-exceeded",
        `memory_mb ${spec.memory_mb} does not fit: ${free.memoryMb} MiB of ${capacity.memoryMb} are free`,
        "memory_mb",
      );
    }
    if (spec.vcpus > capacity.vcpus) {
      throw new ComputeError(
        "capacity-exceeded",
        `vcpus ${spec.vcpus} is more than this datacenter has (${capacity.vcpus})`,
        "vcpus",
      );
    }
  }

  #known(instanceId: string): InstanceStatus | undefined {
    try {
      return this.#options.driver.status(instanceId);
    } catch (error) {
      if (error instanceof ComputeError && (error.code === "not-found" || error.code === "invalid-argument"))
        return undefined;
      throw error;
    }
  }

  #versionOf(imagePath: string): number | null {
    const localId = imagePath
      .split("/")
      .at(-1)
      ?.replace(/\.[a-z0-9]+$/, "");
    if (!localId) return null;
    return this.#options.store.findByLocalId(localId)?.version ?? null;
  }

  async #pullThenBoot(spec: ManagerInstanceSpec): Promise<void> {
    const id = spec.instance_id;
    try {
      const held = await this.#options.ensureImageVersion(spec.image_id, spec.image_version);
      const pending = this.#pending.get(id);
      if (!pending) return; // deleted while the image was on its way
      this.#pending.delete(id);
      await this.#bootOnce(pending.spec, held);
    } catch (error) {
      const reason = `could not start: ${error instanceof Error ? error.message : String(error)}`;
      this.#options.log(`[WARN] instance ${id}: ${reason}`);
      if (this.#known(id)) return; // the driver reported its own failure
      const pending = this.#pending.get(id) ?? { spec, state: "failed", reason };
      pending.state = "failed";
      pending.reason = reason;
      this.#pending.set(id, pending);
      this.#report(id);
    }
  }

  /** Boots, recorded in #booting until the driver knows the instance (no await before the set). */
  #bootOnce(spec: ManagerInstanceSpec, held: VersionRecord): Promise<void> {
    const id = spec.instance_id;
    const boot = this.#boot(spec, held).finally(() => this.#booting.delete(id));
    this.#booting.set(id, boot);
    return boot;
  }

  async #boot(spec: ManagerInstanceSpec, held: VersionRecord): Promise<void> {
    if (held.format === "iso" || !held.localId) {
      throw new ComputeError(
        "invalid-argument",
        `image ${spec.image_id} version ${spec.image_version} is ${held.format}; only raw and qcow2 disks boot`,
        "image_id",
      );
    }
    const driver = this.#options.driver;
    await driver.create({
      instanceId: spec.instance_id,
      name: spec.name,
      ...(spec.hostname !== undefined ? { hostname: spec.hostname } : {}),
      vmGroup: spec.vm_group,
      ...(spec.vm_group_id !== undefined ? { vmGroupId: spec.vm_group_id } : {}),
      ...(spec.spread_hosts ? { spreadHosts: true } : {}),
      region: this.#options.region,
      datacenter: this.#options.datacenter,
      image: { path: this.#options.store.imagePath(held.localId), format: held.format, id: spec.image_id },
      vcpus: spec.vcpus,
      memoryMb: spec.memory_mb,
      metadata: spec.metadata,
      ...this.#networkInterfaceOf(spec),
    });
    try {
      // Its tap must exist before QEMU opens it, and its network's rules before it can talk.
      if (spec.network && this.#options.guestNetworks) {
        if (spec.network.firewall) {
          await this.#options.guestNetworks.firewalls?.offer(spec.network.id, spec.network.firewall);
        }
        await this.#syncNetworks();
      }
      await driver.start(spec.instance_id);
    } catch (error) {
      // A start that fails leaves the instance created and stopped or failed; the control plane
      // sees that state and may ask again.
      this.#report(spec.instance_id);
      throw error;
    }
  }

  #networkInterfaceOf(spec: ManagerInstanceSpec): { networkInterface?: GuestNetworkInterface } {
    const networks = this.#options.guestNetworks;
    if (!spec.network || !networks) return {};
    const exposes = spec.expose && spec.expose.length > 0 && spec.network.gateway && spec.vm_group_id;
    if (exposes && !networks.offersEndpoints) {
      throw new ComputeError(
        "invalid-argument",
        `datacenter ${this.#options.datacenter} runs its guests on host agents and its manager has no guest network of its own (serve regional-manager --guest-network-underlay) to be their gateway: a group's exposed ports (expose) have nowhere to be offered`,
        "expose",
      );
    }
    return {
      networkInterface: {
        network: spec.network.id,
        vni: spec.network.vni,
        address: spec.network.address,
        prefixLength: spec.network.prefix_length,
        mtu: networks.mtu,
        ...(exposes
          ? {
              endpoints: {
                group: spec.vm_group_id as string,
                gateway: spec.network.gateway as string,
                ports: (spec.expose ?? []).map((entry) => entry.port),
              },
            }
          : {}),
      },
    };
  }

  /**
   * A guest in its group's endpoints is ready once it also accepts connections on every exposed
   * port (a load balancer's health check): until then it is `running`, and the control plane
   * waits for it as for any guest not ready yet — a rolling update never takes the old instance
   * away before the new one serves.
   */
  #readiness(
    instanceId: string,
    state: ReportedInstanceState,
    reason: string | null,
    nic: GuestNetworkInterface | undefined,
  ): { state: ReportedInstanceState; reason: string | null } {
    const networks = this.#options.guestNetworks;
    if (state !== "ready" || !nic?.endpoints || !networks) return { state, reason };
    if (networks.serves(instanceId, nic.endpoints.ports)) return { state, reason };
    return {
      state: "running",
      reason: `ready; waiting for its exposed port(s) ${nic.endpoints.ports.join(", ")} to accept connections`,
    };
  }

  /** The endpoints of the guest's group, for its report (once this host has given them ports). */
  #endpointsOf(nic: GuestNetworkInterface | undefined): { endpoints?: ReportedEndpoint[] } {
    const networks = this.#options.guestNetworks;
    if (!nic?.endpoints || !networks) return {};
    return { endpoints: networks.endpointsOf(nic.endpoints.group, nic.endpoints.ports) };
  }

  /**
   * Takes a network's firewall from the control plane and applies it to the guests here; false
   * when this manager attaches no guests to networks.
   */
  async setFirewall(networkId: string, firewall: ManagerNetworkFirewall): Promise<boolean> {
    const networks = this.#options.guestNetworks;
    if (!networks?.firewalls) return false;
    if (await networks.firewalls.offer(networkId, firewall)) await this.#syncNetworks();
    return true;
  }

  firewallRevision(networkId: string): number | undefined {
    return this.#options.guestNetworks?.firewalls?.revisionOf(networkId);
  }

  /** Brings the host's networking to what the guests this manager knows need. */
  syncNetworks(): Promise<void> {
    return this.#syncNetworks();
  }

  async #syncNetworks(): Promise<void> {
    const networks = this.#options.guestNetworks;
    if (!networks) return;
    const guests = this.#options.driver.list().flatMap((status) =>
      status.spec.networkInterface
        ? [
            {
              instanceId: status.instanceId,
              nic: status.spec.networkInterface,
              ready: status.state === "ready" && !this.#leaving.has(status.instanceId),
            },
          ]
        : [],
    );
    await networks.sync(guests);
  }

  #stateChanged(change: InstanceStateChange): void {
    // A guest entering or leaving `ready` joins or leaves its group's endpoints at once.
    if (this.#known(change.instanceId)?.spec.networkInterface?.endpoints) {
      this.#syncNetworks().catch((error: Error) =>
        this.#options.log(`[WARN] endpoints of ${change.instanceId} not updated: ${error.message}`),
      );
    }
    this.#report(change.instanceId, change);
  }

  /** Queues a report of the instance's current state behind its earlier ones. */
  #report(instanceId: string, change?: InstanceStateChange): void {
    const report = this.#snapshot(instanceId, change);
    if (!report) return;
    const unsent = this.#unsentAttributeReports.get(instanceId);
    if (!change && unsent) {
      unsent.report = report;
      return;
    }
    const slot = { report };
    if (!change) this.#unsentAttributeReports.set(instanceId, slot);
    const previous = this.#reports.get(instanceId) ?? Promise.resolve();
    const next = previous.then(() => {
      if (this.#unsentAttributeReports.get(instanceId) === slot)
        this.#unsentAttributeReports.delete(instanceId);
      return this.#send(instanceId, slot.report);
    });
    this.#reports.set(instanceId, next);
    void next.finally(() => {
      if (this.#reports.get(instanceId) === next) this.#reports.delete(instanceId);
    });
  }

  #snapshot(instanceId: string, change?: InstanceStateChange): InstanceReport | undefined {
    const known = this.#known(instanceId);
    if (known) {
      const { state, reason } = this.#readiness(
        instanceId,
        change?.state ?? known.state,
        (change ? change.reason : known.reason) ?? null,
        known.spec.networkInterface,
      );
      const consoleTail =
        change?.consoleTail ??
        this.#options.driver.consoleLog(instanceId, { tailBytes: this.#options.reportConsoleBytes ?? 4096 });
      const version = this.#versionOf(known.spec.image.path);
      return {
        state,
        state_reason: reason ?? null,
        // Where the guest is reachable: its network address, once it has a NIC on the network.
        address: known.spec.networkInterface?.address ?? null,
        ...this.#endpointsOf(known.spec.networkInterface),
        local_id: instanceId,
        host: known.host ?? null,
        ...(version !== null ? { image_version: version } : {}),
        guest_attributes: known.guestAttributes,
        boot_log_tail: consoleTail.slice(-16_000),
        ...(change?.repair && change.reason
          ? { repair: { reason: change.reason, at: change.at.toISOString() } }
          : {}),
      };
    }
    const pending = this.#pending.get(instanceId);
    if (!pending) return undefined;
    return {
      state: pending.state,
      state_reason: pending.reason,
      image_version: pending.spec.image_version,
    };
  }

  async #send(instanceId: string, full: InstanceReport): Promise<void> {
    const bounded = boundReport(full);
    let report = bounded.report;
    if (bounded.leftOut.length > 0) {
      this.#options.log(
        `[WARN] the report of ${instanceId} leaves out guest attributes ${bounded.leftOut.join(", ")}: too large to send`,
      );
    }
    for (let attempt = 0; attempt < 4; attempt++) {
      try {
        await this.#options.reporter.reportInstance(instanceId, report);
        return;
      } catch (error) {
        const status = (error as { status?: number }).status;
        if (status !== undefined && status >= 400 && status < 500) {
          const essential = essentialReport(report);
          const canShrink = jsonBytes(essential) < jsonBytes(report);
          this.#options.log(
            `[WARN] control plane refused the ${report.state} report of ${instanceId}${canShrink ? " (sending its state alone)" : ""}: ${error}`,
          );
          // Refused as it is, it always will be: its state must still get through.
          if (!canShrink) return;
          report = essential;
          continue;
        }
        if (attempt === 3) {
          this.#options.log(`[WARN] could not report ${instanceId} ${report.state}: ${error}`);
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** attempt));
      }
    }
  }
}
