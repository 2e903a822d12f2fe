/**
 * sockit's entry point: hands the command line to {@linkcode main} and exits with its code.
 *
 * @module
 */

import { main } from "./lib/cli.ts";

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
