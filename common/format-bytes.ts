// Sizes in the reasons a placement gives (the control plane's over datacenters, a manager's
// over its hosts), so both say them alike.
const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"] as const;

/** 67108864 → "64 MiB", 1536 → "1.5 KiB". */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  const shown = Number.isInteger(value) ? String(value) : value.toFixed(1).replace(/\.0$/, "");
  return `${shown} ${UNITS[unit]}`;
}
