// How a regional manager speaks to the control plane: register, heartbeat, report its
// copies of image versions and its instances, ask where to pull a version from, and resolve
// internal names for its guests. Plain fetch with the
// manager credential an admin issued.
import { outgoingTraceparent } from "../common/trace-context.ts";
import type { InternalNameAnswer } from "../schemas/internal-names.ts";
import type { InstanceReport } from "../schemas/manager-instances.ts";
import type { ReplicaReport as CatalogReplicaReport, ReplicaSources } from "../schemas/managers.ts";
import type { Capacity, Heartbeat, HeartbeatAnswer } from "../schemas/regions.ts";
import type { ReplicaReport, ReplicaReporter } from "./transfer/reporter.ts";

/**
 * A guest's resolver waits 2 s per try (the guest image's resolv.conf): a lookup that cannot be
 * answered by then is better answered SERVFAIL than not at all.
 */
const NAME_LOOKUP_TIMEOUT_MS = 1_500;

export class ControlPlaneError extends Error {
  readonly status: number;
  readonly code: string | undefined;
  constructor(status: number, code: string | undefined, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export interface ControlPlaneClientOptions {
  url: string;
  credential: string;
  region: string;
  datacenter: string;
  /** Per-request timeout; the control plane answers these calls at once. */
  timeoutMs?: number;
}

export class ControlPlaneClient implements ReplicaReporter {
  readonly #options: ControlPlaneClientOptions;
  constructor(options: ControlPlaneClientOptions) {
    this.#options = options;
  }

  get jwksUrl(): string {
    return `${this.#base()}/.well-known/jwks.json`;
  }

  register(registration: { managerUrl: string; capacity: Capacity }): Promise<unknown> {
    return this.#request("PUT", `/v1/datacenters/${this.#options.datacenter}`, {
      region: this.#options.region,
      manager_url: registration.managerUrl,
      driver: "qemu",
      capacity: registration.capacity,
    });
  }

  heartbeat(heartbeat: Heartbeat): Promise<Partial<HeartbeatAnswer>> {
    return this.#request(
      "POST",
      `/v1/datacenters/${this.#options.datacenter}/heartbeat`,
      heartbeat,
    ) as Promise<Partial<HeartbeatAnswer>>;
  }

  sources(imageId: string, version: number): Promise<ReplicaSources> {
    return this.#request(
      "GET",
      `/v1/images/${imageId}/versions/${version}/sources`,
    ) as Promise<ReplicaSources>;
  }

  async reportReplica(report: ReplicaReport): Promise<void> {
    const body: CatalogReplicaReport = {
      state: report.state,
      ...(report.localId !== undefined ? { local_id: report.localId } : {}),
      ...(report.digest !== undefined ? { digest: report.digest } : {}),
      ...(report.manifestDigest !== undefined ? { manifest_digest: report.manifestDigest } : {}),
      ...(report.size !== undefined ? { size: report.size } : {}),
      ...(report.bytesDone !== undefined ? { bytes_done: report.bytesDone } : {}),
      ...(report.bytesTotal !== undefined ? { bytes_total: report.bytesTotal } : {}),
      ...(report.bytesReceived !== undefined ? { bytes_received: report.bytesReceived } : {}),
      ...(report.error !== undefined ? { error: report.error.slice(0, 2000) } : {}),
    };
    await this.#request(
      "PUT",
      `/v1/datacenters/${this.#options.datacenter}/replicas/${report.imageId}/versions/${report.version}`,
      body,
    );
  }

  /** Whether `credential` (a host agent's) is a manager credential of this datacenter. */
  async isManagerCredential(credential: string): Promise<boolean> {
    const response = await fetch(
      `${this.#base()}/v1/datacenters/${this.#options.datacenter}/credential-check`,
      {
        headers: { authorization: `Bearer ${credential}` },
        signal: AbortSignal.timeout(this.#options.timeoutMs ?? 15_000),
      },
    );
    await response.body?.cancel();
    if (response.status === 401 || response.status === 403) return false;
    if (!response.ok)
      throw new ControlPlaneError(response.status, undefined, `credential check: ${response.status}`);
    return true;
  }

  /** Reports an instance's state, guest attributes and console tail to the catalog. */
  async reportInstance(instanceId: string, report: InstanceReport): Promise<void> {
    await this.#request("PUT", `/v1/datacenters/${this.#options.datacenter}/instances/${instanceId}`, report);
  }

  /** What `name` is for the guest of `instanceId` (undefined: no such name in its project). */
  async resolveInternalName(instanceId: string, name: string): Promise<InternalNameAnswer | undefined> {
    try {
      return (await this.#request(
        "GET",
        `/v1/datacenters/${this.#options.datacenter}/instances/${instanceId}/names/${encodeURIComponent(name)}`,
        undefined,
        NAME_LOOKUP_TIMEOUT_MS,
      )) as InternalNameAnswer;
    } catch (error) {
      if (error instanceof ControlPlaneError && error.status === 404) return undefined;
      throw error;
    }
  }

  #base(): string {
    return this.#options.url.replace(/\/+$/, "");
  }

  async #request(method: string, path: string, body?: unknown, timeoutMs?: number): Promise<unknown> {
    const response = await fetch(`${this.#base()}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.#options.credential}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
        // Reports made while serving a traced request (or its guests' start) stay in its trace.
        ...outgoingTraceparent(),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs ?? this.#options.timeoutMs ?? 15_000),
    });
    const text = await response.text();
    const parsed = text ? (JSON.parse(text) as { code?: string; detail?: string }) : undefined;
    if (!response.ok) {
      throw new ControlPlaneError(
        response.status,
        parsed?.code,
        `control plane ${method} ${path}: ${response.status} ${parsed?.detail ?? text.slice(0, 200)}`,
      );
    }
    return parsed;
  }
}
