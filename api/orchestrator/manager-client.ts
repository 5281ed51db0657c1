// How the control plane asks a regional manager for something: one way to find a datacenter's
// manager (the caller says whether a down datacenter is waited for or fails the step), one
// request with one error (ManagerCallError). Instance calls carry a short-lived instance token
// (one datacenter, one instance), replica calls a transfer token; both are signed with the
// control plane's keys, which the manager checks against the control plane's JWKS.
import { eq } from "drizzle-orm";
import { outgoingTraceparent } from "../../common/trace-context.ts";
import type { ManagerInstanceSpec, ManagerInstanceStatus } from "../../schemas/manager-instances.ts";
import type { DatacenterStatus } from "../../schemas/regions.ts";
import { datacenterStatusOf } from "../catalog/datacenter-health.ts";
import { datacenterStatus } from "../catalog/datacenter-status.ts";
import { datacenters } from "../catalog/schema.ts";
import type { Services } from "../env.ts";
import type { InstanceTokenSigner } from "../signing.ts";
import { PermanentError } from "./runner.ts";

export interface ManagerTarget {
  /** The datacenter whose manager runs the instance (the token is valid there only). */
  datacenter: string;
  managerUrl: string;
  signer: InstanceTokenSigner;
  timeoutMs?: number;
}

export class ManagerCallError extends Error {
  readonly status: number;
  readonly code: string | undefined;
  constructor(status: number, code: string | undefined, message: string) {
    super(message);
    this.name = "ManagerCallError";
    this.status = status;
    this.code = code;
  }
}

/** A manager's 400: the request itself was wrong, so the operation ends instead of retrying. */
export class ManagerRefusedError extends PermanentError {
  readonly status = 400;
}

type Datacenter = typeof datacenters.$inferSelect;

/**
 * What a step does when the datacenter it needs is down: `wait` (bounded, see
 * waitForDatacenter) for work that must happen there, `fail` at once for work another
 * datacenter or a later pass can do instead.
 */
export type WhenDown = "wait" | "fail";

/** The datacenter's catalog row, once it has a registered manager (and, per `whenDown`, is not down). */
export async function managerOf(
  services: Services,
  name: string,
  whenDown: WhenDown,
): Promise<Datacenter & { managerUrl: string }> {
  if (whenDown === "wait") await waitForDatacenter(services, name);
  const [row] = await services.db.select().from(datacenters).where(eq(datacenters.name, name)).limit(1);
  if (!row?.managerUrl) throw new Error(`datacenter ${name} has no registered manager`);
  if (whenDown === "fail" && datacenterStatus(row.lastHeartbeatAt, services.now()) === "down")
    throw new Error(`datacenter ${name} is down`);
  return { ...row, managerUrl: row.managerUrl };
}

export interface ManagerRequest {
  managerUrl: string;
  token: string;
  method: string;
  path: string;
  body?: unknown;
  timeoutMs: number;
  /** Begins the error message of a refusal, e.g. "manager of dc-a: GET /v1/instances/x". */
  describe: string;
}

/**
 * Sends one request to a manager, with the `traceparent` of the work under way; any answer but
 * 2xx is a ManagerCallError.
 */
export async function requestManager(request: ManagerRequest): Promise<unknown> {
  const { body } = request;
  const response = await fetch(`${request.managerUrl.replace(/\/+$/, "")}${request.path}`, {
    method: request.method,
    headers: {
      authorization: `Bearer ${request.token}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      // A new span of the operation's (or request's) trace: the manager logs under the same ID.
      ...outgoingTraceparent(),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(request.timeoutMs),
  });
  const text = await response.text();
  let parsed: { code?: string; detail?: string } | undefined;
  try {
    parsed = text ? (JSON.parse(text) as { code?: string; detail?: string }) : undefined;
  } catch {
    parsed = undefined;
  }
  if (!response.ok) {
    throw new ManagerCallError(
      response.status,
      parsed?.code,
      `${request.describe}: ${response.status} ${parsed?.detail ?? text.slice(0, 300)}`,
    );
  }
  return parsed;
}

async function call(
  target: ManagerTarget,
  instanceId: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<unknown> {
  const token = await target.signer.sign({ instanceId, datacenter: target.datacenter });
  try {
    return await requestManager({
      managerUrl: target.managerUrl,
      token,
      method,
      path,
      body,
      timeoutMs: target.timeoutMs ?? 30_000,
      describe: `manager of ${target.datacenter}: ${method} ${path}`,
    });
  } catch (error) {
    // The manager refused the request itself (a bad spec or path): asking again cannot help.
    // Capacity (422) and conflicts (409) may clear, so those are retried.
    if (error instanceof ManagerCallError && error.status === 400) {
      throw new ManagerRefusedError(error.code ?? "manager_refused", error.message);
    }
    throw error;
  }
}

/** Creates and starts the instance (idempotent); the manager pulls the image first if it lacks it. */
export function startInstanceOnManager(
  target: ManagerTarget,
  spec: ManagerInstanceSpec,
): Promise<ManagerInstanceStatus> {
  return call(
    target,
    spec.instance_id,
    "PUT",
    `/v1/instances/${spec.instance_id}`,
    spec,
  ) as Promise<ManagerInstanceStatus>;
}

export function getInstanceOnManager(
  target: ManagerTarget,
  instanceId: string,
): Promise<ManagerInstanceStatus> {
  return call(target, instanceId, "GET", `/v1/instances/${instanceId}`) as Promise<ManagerInstanceStatus>;
}

export function stopInstanceOnManager(
  target: ManagerTarget,
  instanceId: string,
): Promise<ManagerInstanceStatus> {
  return call(
    target,
    instanceId,
    "POST",
    `/v1/instances/${instanceId}/stop`,
  ) as Promise<ManagerInstanceStatus>;
}

/** Stops the instance if it runs and removes its process, sockets, overlay and metadata. */
export async function deleteInstanceOnManager(target: ManagerTarget, instanceId: string): Promise<void> {
  await call(target, instanceId, "DELETE", `/v1/instances/${instanceId}`);
}

/** Replaces the metadata the guest sees; the guest's long-poll returns with it. */
export function setInstanceMetadataOnManager(
  target: ManagerTarget,
  instanceId: string,
  metadata: Record<string, string>,
): Promise<ManagerInstanceStatus> {
  return call(target, instanceId, "PUT", `/v1/instances/${instanceId}/metadata`, {
    metadata,
  }) as Promise<ManagerInstanceStatus>;
}

/** The last bytes of the instance's serial console. */
export async function instanceConsoleOnManager(
  target: ManagerTarget,
  instanceId: string,
  tailBytes = 8192,
): Promise<string> {
  const answer = (await call(
    target,
    instanceId,
    "GET",
    `/v1/instances/${instanceId}/console?tail_bytes=${tailBytes}`,
  )) as { console: string };
  return answer.console;
}

// ——— Waiting for a datacenter that is down ———
// A step that needs a datacenter whose manager stopped heartbeating waits for it to come back
// (bounded) instead of failing at once: a manager restarting or a network blip is not a reason
// to fail a user's operation, but a datacenter gone for good must end it with a clear error.

/** How long a step waits for a down datacenter: GLOBALVM_DATACENTER_WAIT_MS, 5 minutes by default. */
export function datacenterWaitMs(env: Record<string, string | undefined> = process.env): number {
  const text = env.GLOBALVM_DATACENTER_WAIT_MS;
  if (text === undefined || text === "") return 5 * 60_000;
  const ms = Number(text);
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw new Error(`GLOBALVM_DATACENTER_WAIT_MS must be a whole number of milliseconds, not ${text}`);
  }
  return ms;
}

export class DatacenterDownError extends Error {
  readonly code = "datacenter_down";
  constructor(datacenter: string, waitedMs: number) {
    super(
      `datacenter ${datacenter} stayed down for ${Math.round(waitedMs / 1000)} s; gave up waiting for it`,
    );
    this.name = "DatacenterDownError";
  }
}

export interface DatacenterWaitOptions {
  /** Reads the datacenter's status now (a catalog query). */
  status(): Promise<DatacenterStatus>;
  waitMs?: number;
  pollMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

/**
 * Returns at once unless the datacenter is down; then polls until it is back, or throws
 * DatacenterDownError once `waitMs` has passed.
 */
export async function waitWhileDatacenterDown(
  datacenter: string,
  options: DatacenterWaitOptions,
): Promise<void> {
  const waitMs = options.waitMs ?? datacenterWaitMs();
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const started = Date.now();
  while ((await options.status()) === "down") {
    const waited = Date.now() - started;
    if (waited >= waitMs) throw new DatacenterDownError(datacenter, waited);
    await sleep(Math.min(options.pollMs ?? 500, waitMs - waited));
  }
}

/**
 * The orchestrator's steps call this before they need a datacenter: it returns at once when
 * the datacenter is not down, waits while it is, and ends the operation (PermanentError
 * `datacenter_down`) once the wait is over.
 */
export async function waitForDatacenter(
  services: Services,
  datacenter: string,
  sleep?: (ms: number) => Promise<void>,
): Promise<void> {
  try {
    await waitWhileDatacenterDown(datacenter, {
      status: () => datacenterStatusOf(services.db, datacenter, services.now()),
      ...(sleep ? { sleep } : {}),
    });
  } catch (error) {
    if (error instanceof DatacenterDownError) throw new PermanentError(error.code, error.message);
    throw error;
  }
}

/** Where instance calls about a datacenter go; a datacenter that is down makes the caller wait (bounded). */
export async function instanceTargetOf(
  services: Services,
  name: string,
): Promise<ManagerTarget & { row: typeof datacenters.$inferSelect }> {
  const row = await managerOf(services, name, "wait");
  return { datacenter: name, managerUrl: row.managerUrl, signer: services.instanceTokens, row };
}
