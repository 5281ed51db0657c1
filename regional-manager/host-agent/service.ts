// A host agent: one machine of a datacenter running the guests its manager places on it. It
// registers with the manager, then syncs in a loop: it reports what it has and runs, and
// converges on the assignments it is answered with (converge.ts decides; this file does the
// I/O). Its guests are QEMU processes run by the same driver a manager uses, served their
// metadata here, booted from image versions the agent's cache fetched from the manager.
// Guests outlive the agent process; a restarted agent re-adopts them, and removes any its
// manager no longer assigns to it.

import { rmSync } from "node:fs";
import { join } from "node:path";
import { createLogger, type LineLog, lineLog } from "../../common/log.ts";
import { preparePrivateDir } from "../../common/private-dir.ts";
import type { Capacity } from "../../schemas/common.ts";
import type {
  HostAssignment,
  HostInstanceStatus,
  HostRegistration,
  HostSession,
  HostSyncAnswer,
} from "../../schemas/hosts.ts";
import { INTERNAL_NAME_TTL_SECONDS, type InternalNameAnswer } from "../../schemas/internal-names.ts";
import { measureCapacity } from "../capacity.ts";
import {
  type Accelerator,
  type ComputeDriver,
  createComputeDriver,
  type ProbeGuest,
} from "../compute/index.ts";
import { MetadataService } from "../metadata/index.ts";
import { InternalNameCache } from "../metadata/name-cache.ts";
import { prepareGuestHost } from "../network/namespace-host.ts";
import { type ConvergeAction, planConvergence } from "./converge.ts";
import { HostImageCache } from "./image-cache.ts";
import { type AgentNetworkOptions, AgentNetworks } from "./networks.ts";

export interface HostAgentOptions {
  /** The host's name in its datacenter. */
  name: string;
  datacenter: string;
  managerUrl: string;
  /** A manager credential of the datacenter (the control plane issues it). */
  credential: string;
  dataDir: string;
  capacity?: Partial<Capacity>;
  /** Most bytes the image cache keeps (default 20 GiB). */
  cacheLimitBytes?: number;
  accelerator?: Accelerator | "auto";
  probeGuest?: ProbeGuest;
  qemuUser?: string;
  /** Seconds a sync waits for new assignments (default 20). */
  syncWaitSeconds?: number;
  log?: LineLog;
  /**
   * Attach guests to their networks on this host (bridges, VXLAN, taps and nftables, as a
   * manager running its own guests does; needs root or CAP_NET_ADMIN). `underlayAddress` is where
   * the other hosts' tunnels reach this one; `netns` a named network namespace standing for the
   * host (needs nsenter and socat). Without it the host's guests run isolated.
   */
  guestNetwork?: AgentNetworkOptions;
}

export interface RunningHostAgent {
  name: string;
  driver: ComputeDriver;
  cache: HostImageCache;
  /** Resolves once the agent has converged on `revision` (or a later one). */
  converged(revision: number): Promise<void>;
  /** Stops syncing; guests keep running unless `stopGuests`. */
  close(options?: { stopGuests?: boolean }): Promise<void>;
}

const DEFAULT_CACHE_LIMIT = 20 * 2 ** 30;
const CONSOLE_TAIL_BYTES = 4096;
const RETRY_MS = 1000;

class ManagerAnswerError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

export async function startHostAgent(options: HostAgentOptions): Promise<RunningHostAgent> {
  const log =
    options.log ??
    lineLog(createLogger({ service: "host-agent", datacenter: options.datacenter, host: options.name }));
  preparePrivateDir(options.dataDir);
  const capacity = await measureCapacity(options.dataDir, options.capacity);
  const cache = await HostImageCache.open(join(options.dataDir, "images"), {
    limitBytes: options.cacheLimitBytes ?? DEFAULT_CACHE_LIMIT,
    log,
  });
  const { netns, qemuOwner, metadataSockets, socketDir } = prepareGuestHost({
    guestNetwork: options.guestNetwork,
    qemuUser: options.qemuUser,
    dataDir: options.dataDir,
  });
  const base = options.managerUrl.replace(/\/+$/, "");
  let session: HostSession | undefined;
  // A guest's DNS answers come from the catalog through the manager, kept as long as a guest may
  // keep them.
  const internalNames = new InternalNameCache(
    async (instanceId, name) => {
      if (!session) throw new Error("not registered with the manager yet");
      const path = `/v1/hosts/${options.name}/instances/${instanceId}/names/${encodeURIComponent(name)}`;
      try {
        return (await call("GET", path, session.session_token, undefined)) as InternalNameAnswer;
      } catch (error) {
        if (error instanceof ManagerAnswerError && error.status === 404) return undefined;
        throw error;
      }
    },
    { ttlMs: INTERNAL_NAME_TTL_SECONDS * 1000 },
  );
  const metadata = new MetadataService({
    ...socketDir,
    lookupName: (instanceId, name) => internalNames.lookup(instanceId, name),
  });
  const driver = createComputeDriver("qemu", {
    dataDir: join(options.dataDir, "compute"),
    metadata,
    capacity: { vcpus: capacity.vcpus, memoryMb: capacity.memory_mb },
    accelerator: options.accelerator ?? "auto",
    ...(options.probeGuest ? { probeGuest: options.probeGuest } : {}),
    probeCacheFile: join(options.dataDir, "accelerator-probe.json"),
    ...(options.qemuUser ? { qemuUser: options.qemuUser } : {}),
    ...(netns ? { netns } : {}),
  });
  const adopted = await driver.reattach();
  if (adopted.length > 0) log(`re-adopted ${adopted.length} guest(s)`);

  const networks = new AgentNetworks({
    guestNetwork: options.guestNetwork,
    driver,
    dataDir: options.dataDir,
    tapOwnerUid: qemuOwner?.uid,
    log,
  });
  // The kernel kept carrying the re-adopted guests' traffic; this adopts it.
  await networks.sync();

  const registration: HostRegistration = {
    capacity,
    arch: process.arch === "arm64" ? "aarch64" : "x86_64",
    formats: ["raw", "qcow2"],
    cache_limit_bytes: options.cacheLimitBytes ?? DEFAULT_CACHE_LIMIT,
    ...(options.guestNetwork ? { underlay_address: options.guestNetwork.underlayAddress } : {}),
  };
  let closed = false;
  let revision = 0;
  let convergedRevision = 0;
  const convergedWaiters = new Set<() => void>();
  /** Instances whose image is on its way, or whose start failed before the driver knew them. */
  const preparing = new Map<string, { state: "fetching-image" | "failed"; reason: string | null }>();
  /** What each instance's assignment last asked, so only a change of it starts or stops a guest. */
  const lastDesired = new Map<string, HostAssignment["desired"]>();
  /** The generation of each guest's assignment when it was booted or adopted. */
  const generations = new Map<string, number>();
  let wake: AbortController = new AbortController();

  async function call(method: string, path: string, token: string, body: unknown, signal?: AbortSignal) {
    const response = await fetch(`${base}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      ...(signal ? { signal } : {}),
    });
    const text = await response.text();
    if (!response.ok)
      throw new ManagerAnswerError(
        response.status,
        `${method} ${path}: ${response.status} ${text.slice(0, 300)}`,
      );
    return JSON.parse(text) as unknown;
  }

  async function register(): Promise<HostSession> {
    const answer = (await call(
      "PUT",
      `/v1/hosts/${options.name}`,
      options.credential,
      registration,
    )) as HostSession;
    log(`registered with ${base} as host ${options.name}`);
    return answer;
  }

  function statuses(): HostInstanceStatus[] {
    const known: HostInstanceStatus[] = driver.list().map((status) => ({
      instance_id: status.instanceId,
      state: status.state,
      reason: status.reason ?? null,
      guest_attributes: status.guestAttributes,
      pid: status.pid ?? null,
      console_tail: driver.consoleLog(status.instanceId, { tailBytes: CONSOLE_TAIL_BYTES }),
    }));
    const ids = new Set(known.map((s) => s.instance_id));
    for (const [id, prep] of preparing) {
      if (ids.has(id)) continue;
      known.push({
        instance_id: id,
        state: prep.state,
        reason: prep.reason,
        guest_attributes: {},
        pid: null,
        console_tail: "",
      });
    }
    return known;
  }

  function free(): Capacity {
    let vcpus = capacity.vcpus;
    let memory = capacity.memory_mb;
    for (const status of driver.list()) {
      if (!["starting", "running", "ready"].includes(status.state)) continue;
      vcpus -= status.spec.vcpus;
      memory -= status.spec.memoryMb;
    }
    return {
      vcpus: Math.max(0, vcpus),
      memory_mb: Math.max(0, memory),
      disk_bytes: Math.max(0, capacity.disk_bytes - cache.bytes()),
    };
  }

  async function sync(waitSeconds: number, signal: AbortSignal): Promise<HostSyncAnswer> {
    if (!session) session = await register();
    const body = {
      free: free(),
      cached: cache.cached().map((key) => {
        const at = key.lastIndexOf("@");
        return { image_id: key.slice(0, at), version: Number(key.slice(at + 1)) };
      }),
      cache_bytes: cache.bytes(),
      instances: statuses(),
      revision,
    };
    try {
      return (await call(
        "POST",
        `/v1/hosts/${options.name}/sync?wait=${waitSeconds}`,
        session.session_token,
        body,
        signal,
      )) as HostSyncAnswer;
    } catch (error) {
      // A manager that restarted forgot the session (or the host): register again.
      if (error instanceof ManagerAnswerError && (error.status === 401 || error.status === 404))
        session = undefined;
      throw error;
    }
  }

  let converging: Promise<void> | undefined;
  let pending: HostAssignment[] | undefined;
  function converge(assignments: HostAssignment[], atRevision: number) {
    pending = assignments;
    const target = atRevision;
    if (converging) return;
    /** Whether converging did anything: only then is there news to report at once. */
    let acted = false;
    converging = (async () => {
      while (pending) {
        const next = pending;
        pending = undefined;
        const actions = planConvergence({
          assignments: next,
          guests: driver
            .list()
            .map((s) => ({ instanceId: s.instanceId, state: s.state, metadata: s.spec.metadata })),
          preparing: new Set(preparing.keys()),
          lastDesired,
          generations,
        });
        if (actions.length > 0) acted = true;
        await Promise.all(actions.map((action) => act(action)));
      }
      // Removed guests' taps go; a recreated guest's tap is its new one.
      if (acted) await networks.sync();
      const stillUsed = new Set(driver.list().map((s) => s.spec.image.path));
      if (cache.bytes() > (options.cacheLimitBytes ?? DEFAULT_CACHE_LIMIT)) await cache.collect(stillUsed);
    })()
      .catch((error: unknown) => log(`[WARN] converging failed: ${error}`))
      .finally(() => {
        converging = undefined;
        convergedRevision = Math.max(convergedRevision, target);
        for (const done of [...convergedWaiters]) done();
        // Cutting the long poll short when nothing was done would answer every sync with
        // another at once (every answer is converged on): a busy loop of syncs.
        if (acted) wake.abort();
      });
  }

  async function act(action: ConvergeAction): Promise<void> {
    const id = action.instanceId;
    try {
      switch (action.kind) {
        case "recreate":
        case "boot": {
          const a = action.assignment;
          if (action.kind === "recreate") {
            await driver.delete(id);
            log(`recreating guest ${id} (generation ${a.generation})`);
          }
          lastDesired.set(id, a.desired);
          generations.set(id, a.generation);
          preparing.set(id, {
            state: "fetching-image",
            reason: `fetching ${a.image.image_id}@${a.image.version}`,
          });
          wake.abort();
          if (!session) throw new Error("no session with the manager");
          const image = await cache.ensure(a.image, { url: base, token: session.session_token });
          if (image.bytesReceived > 0) {
            log(
              `fetched ${a.image.image_id}@${a.image.version} for ${id}: ${image.bytesReceived} chunk bytes`,
            );
          }
          await driver.create({
            instanceId: id,
            name: a.name,
            ...(a.hostname !== undefined ? { hostname: a.hostname } : {}),
            vmGroup: a.vm_group,
            ...(a.vm_group_id !== undefined ? { vmGroupId: a.vm_group_id } : {}),
            region: a.region,
            datacenter: a.datacenter,
            image: { path: image.path, format: image.format, id: a.image.image_id },
            vcpus: a.vcpus,
            memoryMb: a.memory_mb,
            metadata: a.metadata,
            ...networks.interfaceOf(a),
          });
          preparing.delete(id);
          // Its tap must exist before QEMU opens it, and its network's rules before it can talk.
          if (a.network_interface) await networks.sync();
          await driver.start(id);
          return;
        }
        case "start":
          lastDesired.set(id, "running");
          generations.set(id, action.generation);
          await driver.start(id);
          return;
        case "stop":
          lastDesired.set(id, "stopped");
          generations.set(id, action.generation);
          await driver.stop(id, { graceMs: 0 });
          return;
        case "set-metadata":
          await driver.setMetadata(id, action.metadata);
          return;
        case "adopt":
          lastDesired.set(id, action.desired);
          generations.set(id, action.generation);
          return;
        case "remove": {
          lastDesired.delete(id);
          generations.delete(id);
          const wasPreparing = preparing.delete(id);
          if (wasPreparing && !driver.list().some((g) => g.instanceId === id)) return;
          await driver.delete(id);
          log(`removed guest ${id}: no longer assigned to this host`);
          return;
        }
      }
    } catch (error) {
      const reason = `${action.kind} failed: ${error instanceof Error ? error.message : String(error)}`;
      log(`[WARN] instance ${id}: ${reason}`);
      if (action.kind === "boot") preparing.set(id, { state: "failed", reason });
    }
  }

  // A guest's change reaches the manager at once: the long poll in flight is cut short.
  driver.on("state", () => wake.abort());
  driver.on("guest-attribute", () => wake.abort());

  const loop = (async () => {
    let waitSeconds = 0;
    while (!closed) {
      const controller = new AbortController();
      wake = controller;
      try {
        const answer = await sync(waitSeconds, controller.signal);
        revision = answer.revision;
        await networks
          .take(answer.networks)
          .catch((error: unknown) =>
            log(
              `[WARN] guest networks not updated: ${error instanceof Error ? error.message : String(error)}`,
            ),
          );
        converge(answer.assignments, answer.revision);
        waitSeconds = longPollSeconds(session, options.syncWaitSeconds);
      } catch (error) {
        if (closed) return;
        if (controller.signal.aborted) {
          // Woken to report: sync again at once, without waiting.
          waitSeconds = 0;
          continue;
        }
        log(`[WARN] sync with ${base} failed: ${error instanceof Error ? error.message : String(error)}`);
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
        waitSeconds = 0;
      }
    }
  })();

  return {
    name: options.name,
    driver,
    cache,
    converged(target: number) {
      if (convergedRevision >= target) return Promise.resolve();
      return new Promise((resolve) => {
        const done = () => {
          if (convergedRevision < target) return;
          convergedWaiters.delete(done);
          resolve();
        };
        convergedWaiters.add(done);
      });
    },
    async close(closeOptions = {}) {
      closed = true;
      wake.abort();
      await loop;
      await converging;
      if (closeOptions.stopGuests) {
        await Promise.allSettled(driver.list().map((g) => driver.stop(g.instanceId, { graceMs: 0 })));
      }
      await driver.detach();
      await networks.close();
      await metadata.close();
      // Its sockets are gone with the listeners; the next start makes the directory again.
      if (metadataSockets) rmSync(metadataSockets, { recursive: true, force: true });
      await cache.close();
    },
  };
}

/**
 * How long a sync may wait for new assignments: the manager's interval, but short enough that
 * the host syncs three times within the time after which the manager calls it down.
 */
function longPollSeconds(session: HostSession | undefined, configured: number | undefined): number {
  const intervalMs = Math.min(session?.sync_interval_ms ?? 20_000, (session?.down_after_ms ?? 30_000) / 3);
  return Math.max(1, Math.floor(Math.min(configured ?? Number.POSITIVE_INFINITY, intervalMs / 1000)));
}
