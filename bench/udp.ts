/**
 * Benchmarks of the udp tool. Filled in by the udp issue.
 *
 * @module
 */

import type { Scenario } from "./_harness.ts";

/** The udp scenarios. */
export const scenarios: Scenario[] = [];
