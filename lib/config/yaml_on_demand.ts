/**
 * Imported first by main.ts: asks parse.ts, before it is evaluated, to load the `yaml` package only
 * when a file needs it (`prepareParse`). Real ConfigMaps never do; it costs ~4 MiB of RSS and
 * ~15 ms of start-up (docs/benchmarks.md).
 *
 * @module
 */

(globalThis as Record<symbol, unknown>)[Symbol.for("ip-masq-agent.yaml-on-demand")] = true;
