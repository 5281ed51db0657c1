// The compute driver of a manager whose datacenter has host agents: it runs nothing itself.
// Creating an instance places it on a host (scheduler.ts) and records the assignment; the host's
// agent fetches the image from this manager, boots the guest and reports back in its syncs,
// which this driver turns into the state and guest-attribute events every driver emits. So the
// instance manager above it is the same whether guests run here or on hosts.

import { EventEmitter } from "node:events";
import type { HostAssignment, HostImage, HostInstanceStatus } from "../../schemas/hosts.ts";
import {
  type ComputeDriver,
  type ComputeDriverEvents,
  ComputeError,
  type InstanceSpec,
  type InstanceState,
  type InstanceStatus,
} from "../compute/types.ts";
import type { HostInstanceChange, HostRegistry } from "./registry.ts";
import { type HostRequest, type SchedulerHost, scheduleInstance } from "./scheduler.ts";

export interface HostsDriverOptions {
  registry: HostRegistry;
  /** The version behind an image file of the manager's store (what the host fetches). */
  imageOf(spec: InstanceSpec["image"]): HostImage;
  /** The manager's file of a version (what its instance manager knows a guest's version by). */
  pathOf(image: HostImage): string;
  /** The MTU an instance's NIC is recorded with when it comes back from an assignment (default 1450). */
  guestMtu?: number;
  /** How long stop and delete wait for the host to confirm before answering. */
  confirmTimeoutMs?: number;
  /** How often instances are checked for healing (default 1 s); 0 turns healing off. */
  healIntervalMs?: number;
  log?: (line: string) => void;
}

const CONFIRM_TIMEOUT_MS = 30_000;
const HEAL_INTERVAL_MS = 1_000;
/** A guest that keeps stopping is recreated at most this often. */
const HEAL_BACKOFF_MS = 10_000;
const ACTIVE: readonly InstanceState[] = ["starting", "running", "ready"];

/** A host's word for a state, in the driver vocabulary (fetching the image is part of starting). */
function driverState(state: HostInstanceStatus["state"]): InstanceState {
  return state === "fetching-image" ? "starting" : state;
}

export class HostsDriver extends EventEmitter<ComputeDriverEvents> implements ComputeDriver {
  readonly kind = "hosts";
  readonly #options: HostsDriverOptions;
  /** Specs of the instances assigned to hosts, by instance ID (the assignment has the rest). */
  readonly #specs = new Map<string, InstanceSpec>();
  readonly #stopListening: () => void;
  /** Why each instance was last recreated, and when: said in its state until its guest is ready. */
  readonly #healed = new Map<string, { reason: string; at: number }>();
  readonly #healTimer: NodeJS.Timeout | undefined;
  /** The generation at which each instance's guest last ran: one that stops after running is healed. */
  readonly #ran = new Map<string, number>();

  constructor(options: HostsDriverOptions) {
    super();
    this.#options = options;
    this.#stopListening = options.registry.onInstanceChange((change) => this.#hostSaid(change));
    const interval = options.healIntervalMs ?? HEAL_INTERVAL_MS;
    if (interval > 0) this.#healTimer = setInterval(() => this.heal(), interval).unref();
  }

  /**
   * Autohealing: an instance asked to run whose host stopped syncing is placed again on an up
   * host (same instance, name and spec: a new generation there; the old host removes its stale
   * guest if it comes back), and one whose guest stopped or failed by itself on an up host is
   * recreated where it is. Returns the instances healed.
   */
  heal(now = Date.now()): string[] {
    const healed: string[] = [];
    for (const record of this.#options.registry.list()) {
      const up = this.#options.registry.isUp(record);
      for (const assignment of [...record.assignments.values()]) {
        const id = assignment.instance_id;
        if (assignment.desired !== "running" || !this.#specs.has(id)) continue;
        const last = this.#healed.get(id);
        if (last && now - last.at < HEAL_BACKOFF_MS) continue;
        if (!up) {
          // Not synced since this manager started: its agent may just be slower to come back.
          // Within the down time its guests are not failed (status()); a host never seen since,
          // after that, is said failed once, and its instances are not moved.
          if (this.#options.registry.awaitingFirstSync(record)) continue;
          if (record.lastSeenMs === 0) {
            this.#noteHeal(
              id,
              `host ${record.name} has not synced since this manager started`,
              now,
              "failed",
            );
            continue;
          }
          const decision = this.#placeElsewhere(assignment, record.name);
          if (!decision.host) {
            this.#noteHeal(
              id,
              `host ${record.name} stopped syncing; ${decision.refusal ?? "no other host fits"}`,
              now,
              "failed",
            );
            continue;
          }
          this.#options.registry.move(id, decision.host);
          this.#noteHeal(
            id,
            `recreated on host ${decision.host}: host ${record.name} stopped syncing`,
            now,
            "starting",
          );
          healed.push(id);
          continue;
        }
        const status = record.synced?.instances.find((i) => i.instance_id === id);
        const stoppedByItself =
          (status?.state === "stopped" || status?.state === "failed") &&
          this.#ran.get(id) === assignment.generation;
        if (stoppedByItself && status) {
          this.#options.registry.update(id, (a) => ({ ...a, generation: a.generation + 1 }));
          this.#noteHeal(
            id,
            `recreated on host ${record.name}: its guest ${status.state === "failed" ? "failed" : "stopped by itself"}`,
            now,
            "starting",
          );
          healed.push(id);
        }
      }
    }
    return healed;
  }

  #placeElsewhere(assignment: HostAssignment, from: string) {
    const hosts = this.#schedulerHosts().filter((host) => host.name !== from);
    return scheduleInstance(hosts, {
      instanceId: assignment.instance_id,
      vmGroupId: assignment.vm_group_id,
      spreadHosts: this.#specs.get(assignment.instance_id)?.spreadHosts === true,
      vcpus: assignment.vcpus,
      memoryMb: assignment.memory_mb,
      // A moved instance keeps its address: only a host that attaches guests to networks will do.
      ...(assignment.network_interface ? { network: "required" as const } : {}),
      image: {
        imageId: assignment.image.image_id,
        version: assignment.image.version,
        format: assignment.image.format,
        size: assignment.image.size,
      },
    });
  }

  #noteHeal(instanceId: string, reason: string, at: number, state: InstanceState): void {
    const previous = this.#healed.get(instanceId);
    this.#healed.set(instanceId, { reason, at });
    if (previous?.reason === reason) return;
    this.#options.log?.(`[WARN] instance ${instanceId}: ${reason}`);
    this.emit("state", {
      instanceId,
      state,
      previous: undefined,
      reason,
      at: new Date(at),
      ...(state === "starting" ? { repair: true } : {}),
    });
  }

  /** Where each instance would go, with every host's reasons, without placing anything. */
  explain(request: HostRequest) {
    return scheduleInstance(this.#schedulerHosts(), request);
  }

  async create(spec: InstanceSpec): Promise<InstanceStatus> {
    if (this.#specs.has(spec.instanceId)) return this.status(spec.instanceId);
    const image = this.#options.imageOf(spec.image);
    const decision = scheduleInstance(this.#schedulerHosts(), {
      instanceId: spec.instanceId,
      vmGroupId: spec.vmGroupId,
      spreadHosts: spec.spreadHosts === true,
      vcpus: spec.vcpus,
      memoryMb: spec.memoryMb,
      ...(spec.networkInterface ? { network: "preferred" as const } : {}),
      image: { imageId: image.image_id, version: image.version, format: image.format, size: image.size },
    });
    if (!decision.host) {
      throw new ComputeError(
        "capacity-exceeded",
        decision.refusal ?? `no host can run ${spec.instanceId}`,
        "vcpus",
      );
    }
    // On a host that attaches no guests to networks the guest runs isolated, with no address (as
    // on a manager without guest networking), and its spec says so.
    const networked = this.#options.registry.get(decision.host)?.registration.underlay_address !== undefined;
    const { networkInterface, ...isolated } = spec;
    const placed = networked ? spec : isolated;
    this.#specs.set(spec.instanceId, placed);
    this.#options.registry.assign(decision.host, assignmentOf(placed, image, "stopped"));
    return this.status(spec.instanceId);
  }

  async start(instanceId: string): Promise<InstanceStatus> {
    this.#desire(instanceId, "running");
    return this.status(instanceId);
  }

  async stop(instanceId: string): Promise<InstanceStatus> {
    this.#desire(instanceId, "stopped");
    await this.#until(instanceId, (status) => !status || !ACTIVE.includes(driverState(status.state)));
    return this.status(instanceId);
  }

  async delete(instanceId: string): Promise<void> {
    const host = this.#options.registry.hostOf(instanceId);
    if (!host) throw new ComputeError("not-found", `no instance ${instanceId} on this manager's hosts`);
    this.#options.registry.unassign(instanceId);
    this.#ran.delete(instanceId);
    this.#healed.delete(instanceId);
    // The agent removes a guest it is no longer assigned at its next sync.
    await this.#until(
      instanceId,
      () => !host.synced?.instances.some((i) => i.instance_id === instanceId),
      host.name,
    );
    this.#specs.delete(instanceId);
  }

  status(instanceId: string): InstanceStatus {
    const spec = this.#specs.get(instanceId);
    const reported = this.#options.registry.reported(instanceId);
    if (!spec || !reported)
      throw new ComputeError("not-found", `no instance ${instanceId} on this manager's hosts`);
    const record = this.#options.registry.get(reported.host);
    const status = reported.status;
    const hostUp = record ? this.#options.registry.isUp(record) : false;
    const assignment = record?.assignments.get(instanceId);
    let state: InstanceState = status ? driverState(status.state) : "stopped";
    let reason = status?.reason ?? undefined;
    if (!status && assignment?.desired === "running") {
      state = "starting";
      reason = `placed on host ${reported.host}; waiting for it to start the guest`;
    }
    if (!hostUp && ACTIVE.includes(state)) {
      if (record && this.#options.registry.awaitingFirstSync(record)) {
        // The manager restarted (or the host registered again) and the host has not said yet
        // what it runs: still starting as far as anyone knows, until its first sync.
        reason = `waiting for host ${reported.host} to sync since this manager started`;
      } else {
        state = "failed";
        reason =
          record?.lastSeenMs === 0
            ? `host ${reported.host} has not synced since this manager started`
            : `host ${reported.host} stopped syncing`;
      }
    }
    const healed = this.#healed.get(instanceId);
    if (healed && state !== "ready" && healed.reason !== reason)
      reason = reason ? `${healed.reason}; ${reason}` : healed.reason;
    return {
      instanceId,
      state,
      ...(reason ? { reason } : {}),
      ...(status?.console_tail ? { consoleTail: status.console_tail } : {}),
      guestAttributes: status?.guest_attributes ?? {},
      ...(status?.pid ? { pid: status.pid } : {}),
      host: reported.host,
      spec,
    };
  }

  list(): InstanceStatus[] {
    return [...this.#specs.keys()].flatMap((id) => {
      try {
        return [this.status(id)];
      } catch {
        return [];
      }
    });
  }

  consoleLog(instanceId: string, options: { tailBytes?: number } = {}): string {
    const tail = this.#options.registry.reported(instanceId)?.status?.console_tail ?? "";
    return options.tailBytes !== undefined ? tail.slice(-options.tailBytes) : tail;
  }

  /** The assignments survived the manager's restart on disk; their specs come back from them. */
  async reattach(): Promise<InstanceStatus[]> {
    for (const record of this.#options.registry.list()) {
      for (const assignment of record.assignments.values()) {
        this.#specs.set(
          assignment.instance_id,
          specOf(assignment, this.#options.pathOf(assignment.image), this.#options.guestMtu ?? 1450),
        );
      }
    }
    return this.list();
  }

  /** The guests run on their hosts whether or not this manager does. */
  async detach(): Promise<void> {
    clearInterval(this.#healTimer);
    this.#stopListening();
  }

  async setMetadata(instanceId: string, metadata: Record<string, string>): Promise<void> {
    const spec = this.#specs.get(instanceId);
    if (!spec) throw new ComputeError("not-found", `no instance ${instanceId} on this manager's hosts`);
    this.#specs.set(instanceId, { ...spec, metadata: { ...metadata } });
    this.#options.registry.update(instanceId, (assignment) => ({ ...assignment, metadata: { ...metadata } }));
  }

  #desire(instanceId: string, desired: HostAssignment["desired"]): void {
    if (!this.#options.registry.update(instanceId, (assignment) => ({ ...assignment, desired }))) {
      throw new ComputeError("not-found", `no instance ${instanceId} on this manager's hosts`);
    }
  }

  /** Waits until `done` holds for what the host reports (or the host is down, or time runs out). */
  async #until(
    instanceId: string,
    done: (status: HostInstanceStatus | undefined) => boolean,
    hostName?: string,
  ): Promise<void> {
    const deadline = Date.now() + (this.#options.confirmTimeoutMs ?? CONFIRM_TIMEOUT_MS);
    while (Date.now() < deadline) {
      const name = hostName ?? this.#options.registry.hostOf(instanceId)?.name;
      const record = name ? this.#options.registry.get(name) : undefined;
      if (!record || !this.#options.registry.isUp(record)) return;
      if (done(record.synced?.instances.find((i) => i.instance_id === instanceId))) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  #hostSaid(change: HostInstanceChange): void {
    if (!this.#specs.has(change.instanceId)) return;
    if (change.current.state === "running" || change.current.state === "ready") {
      const generation = this.#options.registry
        .get(change.host)
        ?.assignments.get(change.instanceId)?.generation;
      if (generation !== undefined) this.#ran.set(change.instanceId, generation);
    }
    const state = driverState(change.current.state);
    const previous = change.previous ? driverState(change.previous.state) : undefined;
    if (state !== previous || change.current.reason !== change.previous?.reason) {
      this.emit("state", {
        instanceId: change.instanceId,
        state,
        previous,
        ...(change.current.reason ? { reason: change.current.reason } : {}),
        ...(state === "failed" ? { consoleTail: change.current.console_tail } : {}),
        at: new Date(),
      });
    }
    const before = change.previous?.guest_attributes ?? {};
    for (const [path, value] of Object.entries(change.current.guest_attributes)) {
      if (before[path] !== value)
        this.emit("guest-attribute", { instanceId: change.instanceId, path, value });
    }
  }

  #schedulerHosts(): SchedulerHost[] {
    return this.#options.registry.list().map((record) => {
      const capacity = record.registration.capacity;
      const placed = [...record.assignments.values()];
      // Claims are counted from the assignments, not the last sync: an instance placed a moment
      // ago holds its share before its agent has heard of it.
      let vcpus = capacity.vcpus;
      let memoryMb = capacity.memory_mb;
      for (const assignment of placed) {
        vcpus -= assignment.vcpus;
        memoryMb -= assignment.memory_mb;
      }
      return {
        name: record.name,
        state: this.#options.registry.isUp(record) ? "up" : "down",
        arch: record.registration.arch,
        formats: record.registration.formats,
        capacity: { vcpus: capacity.vcpus, memoryMb: capacity.memory_mb, diskBytes: capacity.disk_bytes },
        free: {
          vcpus: Math.max(0, vcpus),
          memoryMb: Math.max(0, memoryMb),
          diskBytes: record.synced?.free.disk_bytes ?? capacity.disk_bytes,
        },
        cached: new Set((record.synced?.cached ?? []).map((c) => `${c.image_id}@${c.version}`)),
        placed: placed.map((assignment) => ({
          instanceId: assignment.instance_id,
          vmGroupId: this.#specs.get(assignment.instance_id)?.vmGroupId,
        })),
        networks: record.registration.underlay_address !== undefined,
      };
    });
  }
}

function assignmentOf(
  spec: InstanceSpec,
  image: HostImage,
  desired: HostAssignment["desired"],
): HostAssignment {
  return {
    instance_id: spec.instanceId,
    name: spec.name,
    ...(spec.hostname !== undefined ? { hostname: spec.hostname } : {}),
    vm_group: spec.vmGroup,
    ...(spec.vmGroupId !== undefined ? { vm_group_id: spec.vmGroupId } : {}),
    region: spec.region,
    datacenter: spec.datacenter,
    image,
    vcpus: spec.vcpus,
    memory_mb: spec.memoryMb,
    metadata: { ...spec.metadata },
    desired,
    generation: 0,
    ...(spec.networkInterface
      ? {
          network_interface: {
            network: spec.networkInterface.network,
            vni: spec.networkInterface.vni,
            address: spec.networkInterface.address,
            prefix_length: spec.networkInterface.prefixLength,
            ...(spec.networkInterface.endpoints
              ? {
                  endpoints: {
                    gateway: spec.networkInterface.endpoints.gateway,
                    ports: [...spec.networkInterface.endpoints.ports],
                  },
                }
              : {}),
          },
        }
      : {}),
  };
}

function specOf(assignment: HostAssignment, path: string, mtu: number): InstanceSpec {
  const nic = assignment.network_interface;
  return {
    instanceId: assignment.instance_id,
    name: assignment.name,
    ...(assignment.hostname !== undefined ? { hostname: assignment.hostname } : {}),
    vmGroup: assignment.vm_group,
    ...(assignment.vm_group_id !== undefined ? { vmGroupId: assignment.vm_group_id } : {}),
    region: assignment.region,
    datacenter: assignment.datacenter,
    image: { path, format: assignment.image.format, id: assignment.image.image_id },
    vcpus: assignment.vcpus,
    memoryMb: assignment.memory_mb,
    metadata: { ...assignment.metadata },
    ...(nic
      ? {
          networkInterface: {
            network: nic.network,
            vni: nic.vni,
            address: nic.address,
            prefixLength: nic.prefix_length,
            mtu,
            // The manager's view: the guest is one of its group's endpoints' backends.
            ...(nic.endpoints && assignment.vm_group_id !== undefined
              ? { endpoints: { group: assignment.vm_group_id, ...nic.endpoints } }
              : {}),
          },
        }
      : {}),
  };
}
