// The manager's record of its datacenter's hosts: what each registered with, what it said in
// its last sync, and what it should run (its assignments). Assignments are the manager's
// decision and are kept on disk, so a restarted manager knows which instance is on which host
// before any agent has synced; what agents report is kept in memory and refreshed by the next
// sync. Liveness is the age of the last sync.

import { readFileSync, renameSync, writeFileSync } from "node:fs";
import type { Capacity } from "../../schemas/common.ts";
import type {
  HostAssignment,
  HostInstanceStatus,
  HostRegistration,
  HostSync,
  ReportedHost,
} from "../../schemas/hosts.ts";

export interface HostRecord {
  name: string;
  registration: HostRegistration;
  /** Milliseconds since the epoch of the last registration or sync. */
  lastSeenMs: number;
  /** The last sync's facts; undefined until the first sync. */
  synced: HostSync | undefined;
  /** Rises with every change of the assignments. */
  revision: number;
  assignments: Map<string, HostAssignment>;
}

/** A change of what a host said about one instance. */
export interface HostInstanceChange {
  host: string;
  instanceId: string;
  previous: HostInstanceStatus | undefined;
  current: HostInstanceStatus;
}

interface PersistedHosts {
  hosts: { name: string; registration: HostRegistration; assignments: HostAssignment[] }[];
}

export interface HostRegistryOptions {
  /** The JSON file assignments are kept in. */
  file: string;
  downAfterMs: number;
  now?: () => number;
}

export class HostRegistry {
  readonly #options: HostRegistryOptions;
  readonly #hosts = new Map<string, HostRecord>();
  readonly #waiters = new Map<string, Set<() => void>>();
  readonly #listeners = new Set<(change: HostInstanceChange) => void>();
  /** When this registry (this manager process) started. */
  readonly #startedMs: number;

  constructor(options: HostRegistryOptions) {
    this.#options = options;
    this.#startedMs = this.#now();
    this.#load();
  }

  #now(): number {
    return (this.#options.now ?? Date.now)();
  }

  /** Registers (or re-registers) a host; its assignments stay as they were. */
  register(name: string, registration: HostRegistration): HostRecord {
    const existing = this.#hosts.get(name);
    const record: HostRecord = existing ?? {
      name,
      registration,
      lastSeenMs: 0,
      synced: undefined,
      revision: 1,
      assignments: new Map(),
    };
    const movedTunnels = existing?.registration.underlay_address !== registration.underlay_address;
    record.registration = registration;
    record.lastSeenMs = this.#now();
    this.#hosts.set(name, record);
    this.#save();
    // The other hosts' tunnels reach this one from their next answer on.
    if (registration.underlay_address && movedTunnels) this.announce();
    return record;
  }

  get(name: string): HostRecord | undefined {
    return this.#hosts.get(name);
  }

  list(): HostRecord[] {
    return [...this.#hosts.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  isUp(record: HostRecord): boolean {
    return record.synced !== undefined && this.#now() - record.lastSeenMs < this.#options.downAfterMs;
  }

  /**
   * A host not up only because it has not synced since this manager started: less than the
   * down time has passed since the start (or since the host registered again). What its guests
   * do is unknown until its first sync, not failed: a restarted manager must not call every
   * guest of its datacenter failed in the second before its agents come back.
   */
  awaitingFirstSync(record: HostRecord): boolean {
    const since = Math.max(this.#startedMs, record.lastSeenMs);
    return record.synced === undefined && this.#now() - since < this.#options.downAfterMs;
  }

  /** Takes a host's sync; tells the listeners what changed for each instance it reported. */
  sync(name: string, sync: HostSync): HostRecord {
    const record = this.#hosts.get(name);
    if (!record) throw new Error(`host ${name} is not registered`);
    const before = new Map((record.synced?.instances ?? []).map((i) => [i.instance_id, i]));
    record.synced = sync;
    record.lastSeenMs = this.#now();
    for (const current of sync.instances) {
      const previous = before.get(current.instance_id);
      if (previous && sameStatus(previous, current)) continue;
      for (const listener of this.#listeners)
        listener({ host: name, instanceId: current.instance_id, previous, current });
    }
    return record;
  }

  onInstanceChange(listener: (change: HostInstanceChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The host an instance is assigned to. */
  hostOf(instanceId: string): HostRecord | undefined {
    for (const record of this.#hosts.values()) if (record.assignments.has(instanceId)) return record;
    return undefined;
  }

  /** What the host last said of the instance. */
  reported(instanceId: string): { host: string; status: HostInstanceStatus | undefined } | undefined {
    const record = this.hostOf(instanceId);
    if (!record) return undefined;
    return {
      host: record.name,
      status: record.synced?.instances.find((i) => i.instance_id === instanceId),
    };
  }

  assign(host: string, assignment: HostAssignment): void {
    const record = this.#hosts.get(host);
    if (!record) throw new Error(`host ${host} is not registered`);
    record.assignments.set(assignment.instance_id, assignment);
    this.#changed(record);
  }

  /** Changes an assignment where it is; false when no host has it. */
  update(instanceId: string, change: (assignment: HostAssignment) => HostAssignment): boolean {
    const record = this.hostOf(instanceId);
    const assignment = record?.assignments.get(instanceId);
    if (!record || !assignment) return false;
    record.assignments.set(instanceId, change(assignment));
    this.#changed(record);
    return true;
  }

  /** Moves an instance's assignment to another host, as a new generation. */
  move(instanceId: string, toHost: string): void {
    const from = this.hostOf(instanceId);
    const to = this.#hosts.get(toHost);
    const assignment = from?.assignments.get(instanceId);
    if (!from || !to || !assignment) throw new Error(`cannot move ${instanceId} to ${toHost}`);
    from.assignments.delete(instanceId);
    to.assignments.set(instanceId, { ...assignment, generation: assignment.generation + 1 });
    this.#changed(from);
    this.#changed(to);
  }

  unassign(instanceId: string): void {
    const record = this.hostOf(instanceId);
    if (!record) return;
    record.assignments.delete(instanceId);
    this.#changed(record);
  }

  /** Resolves when the host's revision passes `revision`, or after `waitMs`. */
  waitForChange(name: string, revision: number, waitMs: number): Promise<void> {
    const record = this.#hosts.get(name);
    if (!record || record.revision !== revision || waitMs <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const waiters = this.#waiters.get(name) ?? new Set();
      this.#waiters.set(name, waiters);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, waitMs);
      waiters.add(done);
    });
  }

  /**
   * Something every host's answer carries changed (tunnel peers, a network's firewall): the
   * hosts' revisions rise, so their waiting syncs are answered with it now.
   */
  announce(): void {
    for (const record of this.#hosts.values()) {
      record.revision++;
      for (const wake of [...(this.#waiters.get(record.name) ?? [])]) wake();
    }
  }

  /** Ends every waiting sync (the manager is closing). */
  wakeAll(): void {
    for (const waiters of this.#waiters.values()) for (const wake of [...waiters]) wake();
  }

  /** What the up hosts offer together: the datacenter's capacity when guests run on hosts. */
  upCapacity(): Capacity {
    const total = { vcpus: 0, memory_mb: 0, disk_bytes: 0 };
    for (const record of this.#hosts.values()) {
      if (!this.isUp(record)) continue;
      total.vcpus += record.registration.capacity.vcpus;
      total.memory_mb += record.registration.capacity.memory_mb;
      total.disk_bytes += record.registration.capacity.disk_bytes;
    }
    return total;
  }

  /** The hosts as the heartbeat reports them to the control plane. */
  report(): ReportedHost[] {
    return this.list().map((record) => {
      const free = record.synced?.free ?? record.registration.capacity;
      return {
        name: record.name,
        state: this.isUp(record) ? "up" : "down",
        arch: record.registration.arch,
        capacity: record.registration.capacity,
        free,
        instance_count: record.assignments.size,
        cached_versions: record.synced?.cached.length ?? 0,
        cache_bytes: record.synced?.cache_bytes ?? 0,
        last_seen_at: new Date(record.lastSeenMs).toISOString(),
        ...(record.registration.underlay_address
          ? { underlay_address: record.registration.underlay_address }
          : {}),
      };
    });
  }

  #changed(record: HostRecord): void {
    record.revision++;
    this.#save();
    for (const wake of [...(this.#waiters.get(record.name) ?? [])]) wake();
  }

  #load(): void {
    let persisted: PersistedHosts;
    try {
      persisted = JSON.parse(readFileSync(this.#options.file, "utf8")) as PersistedHosts;
    } catch {
      return;
    }
    for (const host of persisted.hosts) {
      this.#hosts.set(host.name, {
        name: host.name,
        registration: host.registration,
        // Not seen by this process yet: down until it syncs.
        lastSeenMs: 0,
        synced: undefined,
        revision: 1,
        assignments: new Map(host.assignments.map((a) => [a.instance_id, a])),
      });
    }
  }

  #save(): void {
    const persisted: PersistedHosts = {
      hosts: this.list().map((record) => ({
        name: record.name,
        registration: record.registration,
        assignments: [...record.assignments.values()],
      })),
    };
    const temporary = `${this.#options.file}.tmp`;
    writeFileSync(temporary, JSON.stringify(persisted), { mode: 0o600 });
    renameSync(temporary, this.#options.file);
  }
}

function sameStatus(a: HostInstanceStatus, b: HostInstanceStatus): boolean {
  return (
    a.state === b.state &&
    a.reason === b.reason &&
    a.pid === b.pid &&
    JSON.stringify(a.guest_attributes) === JSON.stringify(b.guest_attributes)
  );
}
