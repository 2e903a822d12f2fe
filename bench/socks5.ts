/**
 * Benchmarks of the socks5 tool. Filled in by the socks5 issue.
 *
 * @module
 */

import type { Scenario } from "./_harness.ts";

/** The socks5 scenarios. */
export const scenarios: Scenario[] = [];
