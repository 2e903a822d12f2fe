/**
 * Benchmarks of the relay tool. Filled in by the relay issue.
 *
 * @module
 */

import type { Scenario } from "./_harness.ts";

/** The relay scenarios. */
export const scenarios: Scenario[] = [];
