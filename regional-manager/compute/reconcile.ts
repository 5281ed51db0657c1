// After a restart the manager compares what its driver found (reattach) with what the catalog
// says this datacenter should run. The plan is a pure function of the two lists; the manager
// carries it out (delete, create + start, report).
import type { InstanceState, InstanceStatus } from "./types.ts";

export interface CatalogInstance {
  instanceId: string;
  /** Whether the control plane wants it running (false: stopped by the user). */
  shouldRun: boolean;
}

export interface ReconcilePlan {
  /** Found locally but unknown to the catalog: delete them (a VM group deleted while we were down). */
  remove: string[];
  /**
   * In the catalog and wanted running, but found stopped or not found at all: start (or create
   * and start) them. A failed instance is only reported: whether to retry is the control plane's call.
   */
  start: string[];
  /** Found running but the catalog wants them stopped. */
  stop: string[];
  /** Every local instance's state, to report to the control plane. */
  report: Array<{ instanceId: string; state: InstanceState; reason?: string }>;
}

const RUNNING_STATES: readonly InstanceState[] = ["starting", "running", "ready"];

export function planReconciliation(
  found: readonly InstanceStatus[],
  catalog: readonly CatalogInstance[],
): ReconcilePlan {
  const wanted = new Map(catalog.map((instance) => [instance.instanceId, instance]));
  const local = new Map(found.map((instance) => [instance.instanceId, instance]));
  const plan: ReconcilePlan = { remove: [], start: [], stop: [], report: [] };
  for (const instance of found) {
    const entry = wanted.get(instance.instanceId);
    if (!entry) {
      plan.remove.push(instance.instanceId);
      continue;
    }
    plan.report.push({
      instanceId: instance.instanceId,
      state: instance.state,
      ...(instance.reason !== undefined ? { reason: instance.reason } : {}),
    });
    const running = RUNNING_STATES.includes(instance.state);
    if (entry.shouldRun && !running && instance.state !== "failed") plan.start.push(instance.instanceId);
    if (!entry.shouldRun && running) plan.stop.push(instance.instanceId);
  }
  for (const entry of catalog) {
    if (entry.shouldRun && !local.has(entry.instanceId)) plan.start.push(entry.instanceId);
  }
  return plan;
}
