// Plain functions that turn values into the text the CLI prints.
import type { UploadProgress } from "../client/upload.ts";

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${UNITS[unit]}`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "--";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** Columns padded to their widest cell; the last column is not padded. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return `${[line(header), ...rows.map(line)].join("\n")}\n`;
}

/** Aligned `key: value` lines. */
export function formatFields(fields: [string, string][]): string {
  const width = Math.max(...fields.map(([key]) => key.length)) + 1;
  return `${fields.map(([key, value]) => `${`${key}:`.padEnd(width)} ${value}`).join("\n")}\n`;
}

/**
 * One line of upload progress: phase, bytes, rate, ETA and chunks skipped (already held by
 * the datacenter). With `barWidth` it starts with a bar, for a terminal.
 */
export function formatUploadProgress(progress: UploadProgress, barWidth = 0): string {
  const { phase, bytesDone, bytesTotal, bytesPerSecond, chunksSkipped } = progress;
  const fraction = bytesTotal > 0 ? Math.min(1, bytesDone / bytesTotal) : 1;
  const remaining = bytesTotal - bytesDone;
  const eta = remaining <= 0 ? 0 : bytesPerSecond > 0 ? remaining / bytesPerSecond : Number.POSITIVE_INFINITY;
  const filled = Math.round(fraction * barWidth);
  const bar = barWidth > 0 ? `[${"#".repeat(filled)}${"-".repeat(barWidth - filled)}] ` : "";
  const parts = [
    `${phase.padEnd(10)} ${bar}${String(Math.floor(fraction * 100)).padStart(3)}%`,
    `${formatBytes(bytesDone)}/${formatBytes(bytesTotal)}`,
    `${formatBytes(bytesPerSecond)}/s`,
    `ETA ${formatDuration(eta)}`,
  ];
  if (phase !== "chunking") parts.push(`${chunksSkipped} chunks skipped`);
  return parts.join("  ");
}
