/**
 * `deno task bench [NAME...]`: runs the end-to-end benchmark scenarios (all, or those whose
 * name is given) and prints one table: sockit's figure, a peer's measured side by side, and
 * the ratio. Benchmarks are never part of `deno task test`.
 *
 * @module
 */

import { type BenchRow, printTable, type Scenario } from "./_harness.ts";
import { scenarios as core } from "./core.ts";
import { scenarios as relay } from "./relay.ts";
import { scenarios as relayCluster } from "./relay_cluster.ts";
import { scenarios as transfer } from "./transfer.ts";
import { scenarios as udp } from "./udp.ts";
import { scenarios as socks5 } from "./socks5.ts";
import { scenarios as wormhole } from "./wormhole.ts";

const ALL: Scenario[] = [
  ...core,
  ...relay,
  ...relayCluster,
  ...transfer,
  ...udp,
  ...socks5,
  ...wormhole,
];

const wanted = Deno.args;
const selected = wanted.length ? ALL.filter((s) => wanted.includes(s.name)) : ALL;
if (selected.length === 0) {
  console.error(
    `bench: no scenario named ${wanted.join(", ")}; have ${ALL.map((s) => s.name).join(", ")}`,
  );
  Deno.exit(2);
}
const rows: BenchRow[] = [];
for (const s of selected) {
  console.error(`bench: running ${s.name}...`);
  try {
    rows.push(...await s.run());
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    console.error(`bench: ${s.name} failed: ${message}`);
    rows.push({
      scenario: s.name,
      unit: "-",
      sockit: 0,
      higherIsBetter: true,
      failed: true,
      note: `FAILED: ${message.split("\n")[0]}`,
    });
  }
}
printTable(rows);
