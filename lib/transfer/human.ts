/**
 * Human-readable sizes, rates and durations for transfer logs and the progress bar
 * (binary units: KiB, MiB, GiB).
 *
 * @module
 */

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/**
 * Formats a byte count with a binary unit: `0 B`, `1.5 KiB`, `12.3 MiB`, `1.00 GiB`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatBytes } from "./human.ts";
 * assert.equal(formatBytes(1536), "1.5 KiB");
 * assert.equal(formatBytes(1024 ** 3), "1.00 GiB");
 * ```
 */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) return `${bytes} B`;
  const digits = value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${value.toFixed(unit === 1 && digits === 2 ? 1 : digits)} ${UNITS[unit]}`;
}

/**
 * Formats a rate in bytes per second: `512 KiB/s`, `1.20 GiB/s`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatRate } from "./human.ts";
 * assert.equal(formatRate(2 * 1024 * 1024), "2.00 MiB/s");
 * ```
 */
export function formatRate(bytesPerSecond: number): string {
  if (!Number.isFinite(bytesPerSecond) || bytesPerSecond < 0) return "- B/s";
  return `${formatBytes(Math.round(bytesPerSecond))}/s`;
}

/**
 * Formats a duration in seconds: `0.25 s`, `42 s`, `3m07s`, `1h02m`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatDuration } from "./human.ts";
 * assert.equal(formatDuration(187), "3m07s");
 * ```
 */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "-";
  if (seconds < 10) return `${seconds.toFixed(2)} s`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const s = Math.round(seconds);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}
