/**
 * Benchmarks of the transfer tool. Filled in by the transfer issue.
 *
 * @module
 */

import type { Scenario } from "./_harness.ts";

/** The transfer scenarios. */
export const scenarios: Scenario[] = [];
