// What an instance report may be: within a bound the control plane always accepts (guest
// attributes left out, largest first, when it would not fit), and, when the control plane
// refuses one anyway, the essentials that must still get through.
import type { InstanceReport } from "../../schemas/manager-instances.ts";

/** Half the control plane's body limit (1 MiB): a report never comes near it. */
export const MAX_REPORT_BYTES = 512 * 1024;

export function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value));
}

/**
 * The report, within `maxBytes` as JSON: guest attributes are left out, largest first, until
 * it fits (the manager's limits keep them far below; escaping can still multiply a value by 6).
 */
export function boundReport(
  report: InstanceReport,
  maxBytes = MAX_REPORT_BYTES,
): { report: InstanceReport; leftOut: string[] } {
  if (jsonBytes(report) <= maxBytes || !report.guest_attributes) return { report, leftOut: [] };
  const attributes = { ...report.guest_attributes };
  const largestFirst = Object.keys(attributes).sort(
    (a, b) => jsonBytes(attributes[b]) - jsonBytes(attributes[a]),
  );
  const leftOut: string[] = [];
  for (const key of largestFirst) {
    delete attributes[key];
    leftOut.push(key);
    if (jsonBytes({ ...report, guest_attributes: attributes }) <= maxBytes) break;
  }
  return { report: { ...report, guest_attributes: attributes }, leftOut };
}

/** What a report must carry whatever else is refused: the state, and what identifies it. */
export function essentialReport(report: InstanceReport): InstanceReport {
  return {
    state: report.state,
    ...(report.state_reason !== undefined ? { state_reason: report.state_reason } : {}),
    ...(report.local_id !== undefined ? { local_id: report.local_id } : {}),
    ...(report.image_version !== undefined ? { image_version: report.image_version } : {}),
    // Sent once, with its change: a record the group's history would otherwise lose.
    ...(report.repair !== undefined ? { repair: report.repair } : {}),
  };
}
