// One regional manager: the datacenter's chunk store and its transfer endpoints, registered
// with the control plane and kept alive by heartbeats. The control plane asks it to hold an
// image version (POST /v1/replicas/...); it pulls the missing chunks from a peer by itself.
// It runs the control plane's instances (instances/app.ts) through a compute driver, pulling
// an image version first when it lacks it, and reports every state change back.
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import type { Server } from "node:http";
import { basename, join } from "node:path";
import { type ServerType, serve } from "@hono/node-server";
import {
  applyHttpLimits,
  DEFAULT_HTTP_LIMITS,
  type HttpLimits,
  httpServerOptions,
} from "../common/http-limits.ts";
import { createLogger, type LineLog, type Logger, lineLog } from "../common/log.ts";
import { preparePrivateDir } from "../common/private-dir.ts";
import { assertStrongSecret } from "../common/secret-strength.ts";
import { CONTROL_PLANE_TOKEN_ISSUER, controlPlaneKeys } from "../common/tokens/control-plane-jwt.ts";
import { createInstanceTokenVerifier } from "../common/tokens/instance-token.ts";
import { createNetworkTokenVerifier } from "../common/tokens/network-token.ts";
import { createTransferTokenVerifier } from "../common/tokens/transfer-token.ts";
import type { HostImage } from "../schemas/hosts.ts";
import { INTERNAL_NAME_TTL_SECONDS } from "../schemas/internal-names.ts";
import type { Capacity } from "../schemas/regions.ts";
import { createManagerApp } from "./app.ts";
import { measureCapacity } from "./capacity.ts";
import { type Accelerator, createComputeDriver, type ProbeGuest } from "./compute/index.ts";
import { ControlPlaneClient } from "./control-plane-client.ts";
import { CredentialChecks } from "./hosts/credential-checks.ts";
import { HostAgentNetworks } from "./hosts/host-networks.ts";
import { HostsDriver } from "./hosts/hosts-driver.ts";
import { type HostRecord, HostRegistry } from "./hosts/registry.ts";
import { HostSessions, withHostReads } from "./hosts/sessions.ts";
import { InstanceManager } from "./instances/instance-manager.ts";
import { type GuestAttributeLimits, MetadataService } from "./metadata/index.ts";
import { InternalNameCache } from "./metadata/name-cache.ts";
import { ManagerMetrics, type ManagerMetricsAccess, managerMetricsAccessFrom } from "./metrics.ts";
import { EndpointPorts } from "./network/endpoints.ts";
import { NetworkFirewalls } from "./network/firewalls.ts";
import { GuestNetworks } from "./network/guests.ts";
import { LinuxHostNetwork } from "./network/linux.ts";
import { prepareGuestHost } from "./network/namespace-host.ts";
import { LoopbackRelays } from "./network/relays.ts";
import { VersionPulls } from "./replicas/pulls.ts";
import { ImageStore, type VersionRecord } from "./store/image-store.ts";
import type { ManifestLimits } from "./store/manifest-limits.ts";
import { serveConnectionBodies } from "./transfer/connection-body.ts";
import { type PullProgress, pullImageVersion } from "./transfer/pull.ts";

export const HEARTBEAT_INTERVAL_MS = 10_000;

export interface RegionalManagerOptions {
  region: string;
  datacenter: string;
  controlPlaneUrl: string;
  credential: string;
  dataDir: string;
  port: number;
  host?: string;
  capacity?: Partial<Capacity>;
  heartbeatIntervalMs?: number;
  /**
   * JSON lines (common/log.ts): the request lines and, through `log`'s default, every message.
   * Default: GLOBALVM_LOG_LEVEL on stderr, unless `log` is given (then no request lines).
   */
  logger?: Logger;
  /** The components' messages (default: into `logger`). */
  log?: LineLog;
  /** Compute driver kind (default "qemu") and its accelerator choice ("auto" probes with probeGuest, else TCG). */
  driver?: string;
  accelerator?: Accelerator | "auto";
  probeGuest?: ProbeGuest;
  /** The user QEMU runs as when the manager runs as root (default "nobody"; see compute/qemu/user.ts). */
  qemuUser?: string;
  /** Timeouts and connection limit of the HTTP server (DEFAULT_HTTP_LIMITS for what is not set). */
  http?: Partial<HttpLimits>;
  /** What clients may send here (each manager's default for what is not set). */
  limits?: Partial<RegionalManagerLimits>;
  /**
   * The datacenter's guests run on host agents (`globalvm serve host-agent`) this manager places
   * them on, instead of here. Without it the manager runs every guest itself.
   */
  hostAgents?: { syncIntervalMs?: number; downAfterMs?: number };
  /** Stop every guest on close instead of leaving them running (`globalvm up`: Ctrl-C stops all). */
  stopGuestsOnClose?: boolean;
  /** A JWKS file of the control plane's public keys, trusted instead of the JWKS it serves. */
  controlPlaneKeysFile?: string;
  /**
   * Who may read /metrics (regional-manager/metrics.ts): default from GLOBALVM_MANAGER_METRICS_TOKEN
   * and GLOBALVM_METRICS_PUBLIC, else the loopback only.
   */
  metricsAccess?: ManagerMetricsAccess;
  /**
   * Attach guests to their networks on this host (bridges, VXLAN, taps, nftables in the
   * manager's network namespace; needs root or CAP_NET_ADMIN). `underlayAddress` is this host's
   * address toward the other datacenters. Without it guests get their metadata link only.
   */
  guestNetwork?: {
    underlayAddress: string;
    underlayMtu?: number;
    /**
     * A named network namespace standing for this datacenter's host: bridges, tunnels, taps,
     * rules and QEMU live there instead of in the manager's namespace (its HTTP stays where it
     * listens). Needs nsenter and socat.
     */
    netns?: string;
  };
}

/** The limits one manager puts on uploads (store/manifest-limits.ts) and on guests (metadata/service.ts). */
export type RegionalManagerLimits = ManifestLimits & GuestAttributeLimits;

export interface RunningRegionalManager {
  url: string;
  /** This manager's Prometheus registry and recorders. */
  metrics: ManagerMetrics;
  store: ImageStore;
  instances: InstanceManager;
  /** Host agents' session tokens (issued at registration; they may read versions from the store). */
  hostSessions: HostSessions;
  /** Detaches from running guests (they keep running and are reattached on the next start). */
  close(): Promise<void>;
}

/** Digests travel as `sha256:<hex>` in the catalog and as bare hex in the store. */
export function catalogDigest(hex: string): string {
  return hex.startsWith("sha256:") ? hex : `sha256:${hex}`;
}

export async function startRegionalManager(options: RegionalManagerOptions): Promise<RunningRegionalManager> {
  const logger =
    options.logger ??
    (options.log ? undefined : createLogger({ service: "regional-manager", datacenter: options.datacenter }));
  const log: LineLog = options.log ?? (logger ? lineLog(logger) : (line) => console.error(line));
  const metricsAccess = options.metricsAccess ?? managerMetricsAccessFrom(process.env);
  // A scraper's token is a secret like any other: a guessable one would open the figures.
  if (metricsAccess.token !== undefined)
    assertStrongSecret("GLOBALVM_MANAGER_METRICS_TOKEN", metricsAccess.token);
  const metrics = new ManagerMetrics(options.datacenter);
  // Chunks and images of every project, instance records: this user's only.
  preparePrivateDir(options.dataDir);
  const store = await ImageStore.open(join(options.dataDir, "store"), {
    ...(options.limits ? { limits: options.limits } : {}),
  });
  const controlPlane = new ControlPlaneClient({
    url: options.controlPlaneUrl,
    credential: options.credential,
    region: options.region,
    datacenter: options.datacenter,
  });
  const reporter = {
    reportReplica: (report: Parameters<ControlPlaneClient["reportReplica"]>[0]) =>
      controlPlane.reportReplica({
        ...report,
        ...(report.digest ? { digest: catalogDigest(report.digest) } : {}),
      }),
  };
  // One key lookup for both verifiers: a refresh for a new kid serves both.
  const keys = {
    getKey: controlPlaneKeys(
      options.controlPlaneKeysFile !== undefined
        ? { jwksFile: options.controlPlaneKeysFile }
        : { jwksUrl: controlPlane.jwksUrl },
    ),
  };
  const verifier = createTransferTokenVerifier({
    keys,
    datacenter: options.datacenter,
    issuer: CONTROL_PLANE_TOKEN_ISSUER,
  });
  // Host agents read the versions they boot from with their session token (hosts/sessions.ts).
  const hostSessions = new HostSessions();

  const pulls = new VersionPulls({
    pull: (imageId, version, signal) => replicate(imageId, version, signal),
    held: (imageId, version) => store.getVersion(imageId, version),
  });
  const ensureImageVersion = (imageId: string, version: number) => pulls.ensure(imageId, version);

  const capacity = await measureCapacity(options.dataDir, options.capacity);
  /** With host agents, what the up hosts offer together; else what this machine does. */
  const datacenterCapacity = () => (hostRegistry ? hostRegistry.upCapacity() : capacity);
  const { netns, qemuOwner, metadataSockets, socketDir } = prepareGuestHost({
    guestNetwork: options.guestNetwork,
    qemuUser: options.qemuUser,
    dataDir: options.dataDir,
  });
  // A guest's DNS answers come from the catalog, kept as long as a guest may keep them.
  const internalNames = new InternalNameCache(
    (instanceId, name) => controlPlane.resolveInternalName(instanceId, name),
    { ttlMs: INTERNAL_NAME_TTL_SECONDS * 1000 },
  );
  const metadata = new MetadataService({
    lookupName: (instanceId, name) => internalNames.lookup(instanceId, name),
    ...socketDir,
    ...(options.limits?.maxGuestAttributes ? { maxGuestAttributes: options.limits.maxGuestAttributes } : {}),
    ...(options.limits?.maxGuestAttributesTotalBytes
      ? { maxGuestAttributesTotalBytes: options.limits.maxGuestAttributesTotalBytes }
      : {}),
  });
  const hostRegistry = options.hostAgents
    ? new HostRegistry({
        file: join(options.dataDir, "hosts.json"),
        downAfterMs: options.hostAgents.downAfterMs ?? HOST_DOWN_AFTER_MS,
      })
    : undefined;
  // A guest network of the manager's own: its guests' (without host agents), or with host agents
  // the datacenter's gateway, which offers the endpoints of the guests on the agents.
  const guestNetworks = options.guestNetwork
    ? guestNetworksOf(options.guestNetwork, {
        tapOwnerUid: qemuOwner?.uid,
        dataDir: options.dataDir,
        relaySocketDir: metadataSockets,
        log,
      })
    : undefined;
  // With host agents, each agent attaches its own guests; the manager forwards peers and firewalls.
  const hostNetworks = hostRegistry
    ? new HostAgentNetworks({
        registry: hostRegistry,
        firewalls: new NetworkFirewalls(join(options.dataDir, "network-firewalls.json")),
        ...(guestNetworks ? { gateway: guestNetworks } : {}),
      })
    : undefined;
  const driver = hostRegistry
    ? new HostsDriver({
        guestMtu: hostNetworks?.mtu ?? 1450,
        registry: hostRegistry,
        imageOf: (image) => hostImageOf(store, image.path),
        pathOf: (image) => {
          const held = store.getVersion(image.image_id, image.version);
          return held?.localId ? store.imagePath(held.localId) : "";
        },
        log,
      })
    : localDriver();
  function localDriver() {
    return createComputeDriver(options.driver ?? "qemu", {
      dataDir: join(options.dataDir, "compute"),
      metadata,
      capacity: { vcpus: capacity.vcpus, memoryMb: capacity.memory_mb },
      accelerator: options.accelerator ?? "auto",
      ...(options.probeGuest ? { probeGuest: options.probeGuest } : {}),
      probeCacheFile: join(options.dataDir, "accelerator-probe.json"),
      ...(options.qemuUser ? { qemuUser: options.qemuUser } : {}),
      ...(netns ? { netns } : {}),
    });
  }
  const networking = hostNetworks ?? guestNetworks;
  const instances = new InstanceManager({
    driver,
    store,
    region: options.region,
    datacenter: options.datacenter,
    ensureImageVersion,
    reporter: controlPlane,
    capacity: () => {
      const offered = datacenterCapacity();
      return { vcpus: offered.vcpus, memoryMb: offered.memory_mb };
    },
    log,
    ...(networking ? { guestNetworks: networking } : {}),
  });
  const instanceVerifier = createInstanceTokenVerifier({
    keys,
    datacenter: options.datacenter,
    issuer: CONTROL_PLANE_TOKEN_ISSUER,
  });
  driver.on("state", (change) => metrics.guestStateChanged(change));
  metrics.watch({
    store: () => store.stats(),
    freeBytes: async () => (await measureCapacity(options.dataDir)).disk_bytes,
    guests: () => driver.list(),
    waitingLongPolls: () => metadata.waitingLongPolls(),
  });
  const credentialChecks = new CredentialChecks((credential) => controlPlane.isManagerCredential(credential));
  /** A host that comes up (or back) changes what the datacenter offers: the control plane hears at once. */
  const hostsUp = new Set<string>();
  function hostSynced(host: string) {
    if (hostsUp.has(host)) return;
    hostsUp.add(host);
    void beatSoon();
  }
  let beatSoon: () => Promise<void> = async () => {};
  const app = createManagerApp({
    datacenter: options.datacenter,
    log,
    ...(logger ? { logger } : {}),
    metrics: { metrics, access: metricsAccess },
    transfer: { store, verifier: withHostReads(verifier, hostSessions, options.datacenter), reporter },
    replicas: { store, verifier, reporter, pulls, instancesBootingFrom },
    instances: { instances, verifier: instanceVerifier },
    ...(hostRegistry
      ? {
          hosts: {
            registry: hostRegistry,
            sessions: hostSessions,
            verifyCredential: (credential: string) => credentialChecks.check(credential),
            syncIntervalMs: HOST_SYNC_INTERVAL_MS,
            downAfterMs: options.hostAgents?.downAfterMs ?? HOST_DOWN_AFTER_MS,
            onSync: (host: string) => hostSynced(host),
            ...(hostNetworks ? { networksOf: (record: HostRecord) => hostNetworks.answerFor(record) } : {}),
            lookupName: (instanceId: string, name: string) => internalNames.lookup(instanceId, name),
          },
        }
      : {}),
    networks: {
      instances,
      verifier: createNetworkTokenVerifier({
        keys,
        datacenter: options.datacenter,
        issuer: CONTROL_PLANE_TOKEN_ISSUER,
      }),
    },
  });

  /** Instances (in any state: a stopped one's overlay still reads it) backed by this image file. */
  function instancesBootingFrom(imagePath: string): string[] {
    return driver
      .list()
      .filter((status) => status.spec.image.path === imagePath)
      .map((status) => status.instanceId);
  }

  async function replicate(imageId: string, version: number, signal: AbortSignal): Promise<VersionRecord> {
    const wanted = await controlPlane.sources(imageId, version);
    let last: PullProgress | undefined;
    const record = await pullImageVersion({
      store,
      imageId,
      version,
      expectedDigest: wanted.digest.replace(/^sha256:/, ""),
      expectedSize: wanted.size,
      ...(wanted.manifest_digest ? { expectedManifestDigest: wanted.manifest_digest } : {}),
      project: wanted.project_id,
      sources: wanted.sources.map((s) => ({ url: s.url, token: s.token, datacenter: s.datacenter })),
      reporter,
      recorder: metrics,
      datacenter: options.datacenter,
      onProgress: (progress) => {
        last = progress;
      },
      signal,
    });
    // The figures a delta is judged by: chunk data fetched and every byte on the wire.
    log(
      `pulled ${imageId}@${version}: ${last?.bytesReceived ?? 0} chunk bytes, ${last?.wireBytes ?? 0} bytes on the wire`,
    );
    return record;
  }

  // Guests a previous manager process left running are taken over and reported.
  const reattached = await instances.reattach();
  if (reattached.length > 0) log(`reattached ${reattached.length} instance(s)`);
  const host = options.host ?? "127.0.0.1";
  const http = { ...DEFAULT_HTTP_LIMITS, ...options.http };
  const server: ServerType = await new Promise((resolve) => {
    const s = serve(
      { fetch: app.fetch, port: options.port, hostname: host, serverOptions: httpServerOptions(http) },
      () => resolve(s),
    );
  });
  // A whole-image PUT on a slow link runs as long as its bytes keep coming.
  applyHttpLimits(server as Server, http);
  // Uploads that ask for it are read off their connections (transfer/connection-body.ts).
  serveConnectionBodies(server as Server, app.fetch, http);
  const address = server.address();
  const url = `http://${host}:${typeof address === "object" && address ? address.port : options.port}`;

  await controlPlane.register({
    managerUrl: url,
    capacity: hostRegistry ? { ...datacenterCapacity(), disk_bytes: capacity.disk_bytes } : capacity,
  });
  log(`registered with the control plane; serving ${options.datacenter} on ${url}`);
  const beat = async () => {
    const stats = store.stats();
    const disk = await measureCapacity(options.dataDir, options.capacity);
    const free = instances.free();
    const answer = await controlPlane.heartbeat({
      manager_url: url,
      capacity: hostRegistry ? { ...datacenterCapacity(), disk_bytes: disk.disk_bytes } : capacity,
      ...(hostRegistry ? { hosts: hostRegistry.report() } : {}),
      free: { vcpus: free.vcpus, memory_mb: free.memoryMb, disk_bytes: disk.disk_bytes },
      chunk_count: stats.chunkCount,
      image_count: stats.imageCount,
      ...(guestNetworks ? { underlay_address: guestNetworks.underlayAddress } : {}),
    });
    // A datacenter that came or went: the tunnels reach the ones there are now.
    if (networking?.setPeers(answer.underlay_peers ?? [])) await instances.syncNetworks();
  };
  await beat();
  beatSoon = () => beat().catch((error: unknown) => log(`[WARN] heartbeat failed: ${error}`));
  if (options.stopGuestsOnClose) await resumeGuestsStoppedAtClose();
  const heartbeat = setInterval(() => {
    beat().catch((error: unknown) => log(`[WARN] heartbeat failed: ${error}`));
  }, options.heartbeatIntervalMs ?? HEARTBEAT_INTERVAL_MS);

  async function resumeGuestsStoppedAtClose() {
    const file = join(options.dataDir, GUESTS_TO_RESUME);
    let ids: string[];
    try {
      ids = JSON.parse(readFileSync(file, "utf8")) as string[];
    } catch {
      return;
    }
    for (const id of ids) {
      await driver
        .start(id)
        .catch((error: unknown) => log(`[WARN] guest ${id} did not start again: ${error}`));
    }
    rmSync(file, { force: true });
    if (ids.length > 0) log(`started again ${ids.length} guest(s) stopped at the last close`);
  }

  return {
    url,
    metrics,
    store,
    instances,
    hostSessions,
    async close() {
      clearInterval(heartbeat);
      pulls.close();
      hostRegistry?.wakeAll();
      if (options.stopGuestsOnClose) {
        // Remembered so the next start boots them again; stopped while still attached, so
        // each guest's "stopped" reaches the control plane.
        const active = driver
          .list()
          .filter((guest) => ["starting", "running", "ready"].includes(guest.state))
          .map((guest) => guest.instanceId);
        writeFileSync(join(options.dataDir, GUESTS_TO_RESUME), JSON.stringify(active));
        await Promise.allSettled(driver.list().map((guest) => driver.stop(guest.instanceId)));
      }
      await instances.detach();
      await guestNetworks?.close();
      await metadata.close();
      // Its sockets are gone with the listeners; the next start makes the directory again.
      if (metadataSockets) rmSync(metadataSockets, { recursive: true, force: true });
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      });
      await store.close();
    },
  };
}

/**
 * With stopGuestsOnClose: the guests the last close stopped start again, so a stack that was
 * stopped as a whole (`globalvm up`, Ctrl-C) comes back as it was.
 */
const GUESTS_TO_RESUME = "guests-to-resume.json";

function guestNetworksOf(
  options: NonNullable<RegionalManagerOptions["guestNetwork"]>,
  host: {
    tapOwnerUid: number | undefined;
    dataDir: string;
    /** A namespace host's socket directory: its endpoints are relayed from the loopback. */
    relaySocketDir: string | undefined;
    log: (line: string) => void;
  },
): GuestNetworks {
  const relays =
    options.netns && host.relaySocketDir
      ? new LoopbackRelays({
          netns: options.netns,
          underlayAddress: options.underlayAddress,
          socketDir: host.relaySocketDir,
          log: host.log,
        })
      : undefined;
  return new GuestNetworks({
    host: {
      underlayAddress: options.underlayAddress,
      ...(host.tapOwnerUid !== undefined ? { tapOwnerUid: host.tapOwnerUid } : {}),
    },
    executor: new LinuxHostNetwork(options.netns ? { netns: options.netns } : {}),
    firewalls: new NetworkFirewalls(join(host.dataDir, "network-firewalls.json")),
    endpointPorts: new EndpointPorts(join(host.dataDir, "endpoint-ports.json")),
    ...(relays ? { relays: { relays, host: LoopbackRelays.host } } : {}),
    ...(options.underlayMtu ? { underlayMtu: options.underlayMtu } : {}),
  });
}

/** A host not heard from for this long is down (its agent syncs at least every 20 s). */
const HOST_DOWN_AFTER_MS = 30_000;
/** How often an agent syncs when nothing changes: its long poll's length. */
const HOST_SYNC_INTERVAL_MS = 20_000;

/** The version a guest boots from, named as a host fetches it. */
function hostImageOf(store: ImageStore, path: string): HostImage {
  const localId = basename(path).replace(/\.img$/, "");
  const held = store.findByLocalId(localId);
  if (!held || (held.format !== "raw" && held.format !== "qcow2")) {
    throw new Error(`no bootable version is stored as ${path}`);
  }
  return {
    image_id: held.imageId,
    version: held.version,
    format: held.format,
    digest: catalogDigest(held.digest),
    size: held.size,
  };
}
