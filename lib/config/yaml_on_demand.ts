/**
 * Imported first by main.ts, for its side effect: asks parse.ts, before it is evaluated, to load
 * the `yaml` package only when a config file needs the full YAML parse (`prepareParse`). Real
 * ConfigMaps never do, and the package costs ~4 MiB of RSS and ~15 ms of start-up
 * (docs/benchmarks.md).
 *
 * @module
 */

(globalThis as Record<symbol, unknown>)[Symbol.for("ip-masq-agent.yaml-on-demand")] = true;

export {};
