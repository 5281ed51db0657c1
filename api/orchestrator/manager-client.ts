// How the control plane asks a regional manager to run instances: each call carries a
// short-lived instance token (one datacenter, one instance) signed with the control plane's
// keys, which the manager checks against the control plane's JWKS.
import type { ManagerInstanceSpec, ManagerInstanceStatus } from "../../schemas/manager-instances.ts";
import type { InstanceTokenSigner } from "../signing.ts";

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

async function call(
  target: ManagerTarget,
  instanceId: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<unknown> {
  const token = await target.signer.sign({ instanceId, datacenter: target.datacenter });
  const url = `${target.managerUrl.replace(/\/+$/, "")}${path}`;
  const response = await fetch(url, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(target.timeoutMs ?? 30_000),
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
      `manager of ${target.datacenter}: ${method} ${path}: ${response.status} ${parsed?.detail ?? text.slice(0, 200)}`,
    );
  }
  return parsed;
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
