// globalvm_image's replicas as its state shows them, and the wait that ends a create or an
// update only once they are there. An image's state moves only with its own configuration:
// it shows the current version's copies in the origin region and in the `replicate_to`
// regions, the copies the configuration asked for; copies the control plane made on demand
// for a VM group (reason `on_demand`) are left to the `globalvm_image` data source.

import { setTimeout as sleep } from "node:timers/promises";
import { expectData, type Image, type Schemas } from "../../client/api.ts";
import { type CallContext, CtyNumber, type CtyValue, DiagnosticError, isUnknown } from "../index.ts";
import type { GlobalvmProviderData } from "../provider-data.ts";

type Replica = Schemas["ImageReplica"];

/** The replicas the resource's state shows: the current version's, where the configuration asked for them. */
export function policyReplicas(image: Image): Replica[] {
  return image.replicas.filter((r) => r.reason !== "on_demand" && r.version === image.version);
}

/** The regions that must hold the current version: the origin first, then `replicate_to` in order. */
export function requiredRegions(originRegion: string, replicateTo: readonly string[]): string[] {
  return [originRegion, ...[...replicateTo].sort().filter((region) => region !== originRegion)];
}

export type RegionProgress =
  | { region: string; state: "missing" }
  | {
      region: string;
      state: Replica["state"];
      datacenter: string;
      bytesDone: number;
      bytesTotal: number | null;
    };

const RANK: Record<Replica["state"], number> = {
  available: 0,
  transferring: 1,
  pending: 2,
  failed: 3,
  stale: 4,
};

/**
 * Where each required region stands with the image's current version: its best copy there
 * (available, else transferring, pending, failed, stale), or `missing` while it has none.
 */
export function replicaProgress(image: Image): RegionProgress[] {
  const replicas = policyReplicas(image);
  return requiredRegions(image.origin_region, image.replicate_to).map((region): RegionProgress => {
    const best = replicas
      .filter((r) => r.region === region)
      .sort((a, b) => RANK[a.state] - RANK[b.state] || a.datacenter.localeCompare(b.datacenter))[0];
    if (!best) return { region, state: "missing" };
    return {
      region,
      state: best.state,
      datacenter: best.datacenter,
      bytesDone: best.bytes_done,
      bytesTotal: best.bytes_total,
    };
  });
}

const isObjectValue = (value: CtyValue | undefined): value is { [key: string]: CtyValue } =>
  !!value &&
  typeof value === "object" &&
  !Array.isArray(value) &&
  !(value instanceof CtyNumber) &&
  !isUnknown(value);

/**
 * Whether a (refreshed) state shows its current version available in every region it must
 * be in. When not (an apply that timed out, or a replica lost since), the next plan marks
 * `replicas` unknown so that the apply waits for them again.
 */
export function stateHoldsPolicy(state: { [key: string]: CtyValue }): boolean {
  const version = state.version;
  if (!(version instanceof CtyNumber) || typeof state.origin_region !== "string") return true;
  const replicateTo = Array.isArray(state.replicate_to)
    ? state.replicate_to.filter((r): r is string => typeof r === "string")
    : [];
  const replicas = Array.isArray(state.replicas) ? state.replicas.filter(isObjectValue) : [];
  return requiredRegions(state.origin_region, replicateTo).every((region) =>
    replicas.some(
      (r) =>
        r.region === region &&
        r.state === "available" &&
        r.version instanceof CtyNumber &&
        r.version.text === version.text,
    ),
  );
}

function formatBytes(bytes: number): string {
  if (bytes >= 1 << 30) return `${(bytes / (1 << 30)).toFixed(1)} GiB`;
  if (bytes >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
  return `${(bytes / 1024).toFixed(1)} KiB`;
}

export function describeProgress(progress: RegionProgress): string {
  if (progress.state === "missing") return `${progress.region}: no copy yet`;
  const bytes =
    progress.state === "transferring"
      ? ` ${formatBytes(progress.bytesDone)}${progress.bytesTotal !== null ? ` of ${formatBytes(progress.bytesTotal)}` : ""}`
      : "";
  return `${progress.region}: ${progress.state}${bytes} (${progress.datacenter})`;
}

export interface ReplicaWaitOptions {
  timeoutMs: number;
  /** What is being done, for messages: "creating image web". */
  what: string;
  /** The operation carrying out a policy change, when the API named one: its error is the reason of a failure. */
  operationId?: string | undefined;
  /** How long a replica must stay failed before the wait gives up (the control plane retries a failed pull). */
  failedGraceMs?: number;
  /** Longest pause between two reads of the image. */
  maxPollMs?: number;
}

const DEFAULT_FAILED_GRACE_MS = 5000;
const DATACENTER_CHECK_MS = 10_000;

/** The operation's error message, when there is an operation and it has one. */
async function operationError(
  context: CallContext<GlobalvmProviderData>,
  operationId: string | undefined,
): Promise<string | undefined> {
  if (!operationId) return undefined;
  const result = await context.providerData.api
    .GET("/v1/operations/{id}", { params: { path: { id: operationId } }, signal: context.signal })
    .catch(() => undefined);
  const error = result?.data?.error;
  return error ? `${error.code}: ${error.message}` : undefined;
}

/** Required regions with no copy of the version that have no datacenter up to make one. */
async function regionsWithoutDatacenter(
  context: CallContext<GlobalvmProviderData>,
  regions: string[],
): Promise<string[]> {
  const page = expectData(
    "Listing datacenters",
    await context.providerData.api.GET("/v1/datacenters", {
      params: { query: { page_size: 200 } },
      signal: context.signal,
    }),
  );
  return regions.filter(
    (region) =>
      !page.items.some((dc) => dc.region === region && dc.manager_url !== null && dc.status !== "down"),
  );
}

/**
 * Reads the image until its current version is `available` in the origin region and in every
 * `replicate_to` region, and answers with it. Ends with an error diagnostic when a replica
 * stays failed, when a region has no datacenter up to hold it, or when the timeout passes
 * (the control plane carries on: the next apply waits again); Terraform's stop aborts it.
 */
export async function waitForReplicas(
  context: CallContext<GlobalvmProviderData>,
  imageId: string,
  options: ReplicaWaitOptions,
): Promise<Image> {
  const { api } = context.providerData;
  const started = Date.now();
  const deadline = started + options.timeoutMs;
  const failedGraceMs = options.failedGraceMs ?? DEFAULT_FAILED_GRACE_MS;
  const failedSince = new Map<string, number>();
  let pause = 100;
  let lastSummary = "";
  let lastLog = 0;
  let lastDatacenterCheck = 0;
  for (;;) {
    const result = await api.GET("/v1/images/{id}", {
      params: { path: { id: imageId } },
      signal: context.signal,
    });
    if (result.response.status === 404) {
      throw new DiagnosticError(`The image was deleted while ${options.what}`);
    }
    const image = expectData("Reading the image", result);
    const progress = replicaProgress(image);
    if (image.version !== null && progress.every((p) => p.state === "available")) {
      if (lastSummary) {
        context.log.info(`${options.what}: every replica available`, {
          image: imageId,
          version: image.version ?? 0,
          waited_ms: Date.now() - started,
        });
      }
      return image;
    }
    const now = Date.now();
    for (const p of progress) {
      if (p.state === "available") failedSince.delete(p.region);
      else if (p.state === "failed" && !failedSince.has(p.region)) failedSince.set(p.region, now);
    }
    const failed = progress.find(
      (p) => p.state === "failed" && now - (failedSince.get(p.region) ?? now) >= failedGraceMs,
    );
    if (failed && failed.state !== "missing") {
      const reason = await operationError(context, options.operationId);
      throw new DiagnosticError(`Replicating the image to ${failed.region} failed`, {
        detail: `${options.what}: the copy of version ${image.version} in ${failed.datacenter} (region ${failed.region}) is failed${
          reason ? ` (${reason})` : ""
        }. The control plane retries failed copies; apply again to wait for it once more, nothing is uploaded again.`,
        path: ["replicate_to"],
      });
    }
    const missing = progress.filter((p) => p.state === "missing").map((p) => p.region);
    if (missing.length > 0 && now - lastDatacenterCheck >= DATACENTER_CHECK_MS) {
      lastDatacenterCheck = now;
      const unplaced = await regionsWithoutDatacenter(context, missing);
      if (unplaced.length > 0) {
        throw new DiagnosticError(`No datacenter of ${unplaced.join(", ")} is up to hold the image`, {
          detail: `${options.what}: version ${image.version} must be held in ${unplaced.join(", ")}, where no regional manager is up. The control plane copies it there once one is; apply again then to wait for it.`,
          path: ["replicate_to"],
        });
      }
    }
    const summary = progress.map(describeProgress).join(", ");
    if (summary !== lastSummary || now - lastLog >= 10_000) {
      lastSummary = summary;
      lastLog = now;
      context.log.info(`${options.what}: waiting for replicas`, {
        image: imageId,
        version: image.version ?? 0,
        progress: summary,
      });
    }
    if (now >= deadline) {
      throw new DiagnosticError(`Timed out waiting for the image's replicas`, {
        detail: `${options.what}: after ${Math.round(options.timeoutMs / 1000)} s version ${image.version} is not available everywhere yet (${summary}). The control plane keeps copying; apply again to wait for it (nothing is uploaded again), or raise \`timeouts\`.`,
      });
    }
    await sleep(Math.max(0, Math.min(pause, deadline - now)), undefined, { signal: context.signal });
    pause = Math.min(pause * 2, options.maxPollMs ?? 1000);
  }
}
