// Conversions between cty values and API JSON, and plan-time checks shared by resources.

import { type AttributePath, CtyNumber, type CtyValue, DiagnosticError } from "../index.ts";
import type { GlobalvmProviderData } from "../provider-data.ts";

export function stringMap(value: CtyValue | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (value && typeof value === "object" && !Array.isArray(value) && !(value instanceof CtyNumber)) {
    for (const [key, element] of Object.entries(value)) if (typeof element === "string") out[key] = element;
  }
  return out;
}

export function stringSet(value: CtyValue | undefined): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string").sort() : [];
}

export function numberOf(value: CtyValue | undefined): number | undefined {
  return value instanceof CtyNumber ? value.toNumber() : undefined;
}

/** Fails the plan with the attribute path when a region is not in the catalog. */
export async function checkRegion(
  data: GlobalvmProviderData,
  region: string,
  path: AttributePath,
): Promise<void> {
  const regions = await data.regionNames();
  if (regions.size > 0 && !regions.has(region)) {
    throw new DiagnosticError("Unknown region", {
      detail: `No region ${region}; known regions: ${[...regions].sort().join(", ")}.`,
      path,
    });
  }
}

/** "10m", "30s", "1h30m", "500ms" → milliseconds; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  if (!/^(\d+(\.\d+)?(ms|h|m|s))+$/.test(text)) return undefined;
  let total = 0;
  for (const [, value, , unit] of text.matchAll(/(\d+(\.\d+)?)(ms|h|m|s)/g)) {
    total += Number(value) * (unit === "ms" ? 1 : unit === "s" ? 1000 : unit === "m" ? 60_000 : 3_600_000);
  }
  return total;
}
