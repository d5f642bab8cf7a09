/**
 * `lib/base/`: the folder's map.
 *
 * Owns: what every concern shares and none owns: `Result`, quoting user input, provenance, Go's
 * strconv pieces, the exit-code policy and error chains, config problems (`ConfigError`), and the
 * seams under every effect: `Exec`, `runTool`/`ToolError`, `Clock` and the logger.
 *
 * May import: nothing outside this folder. Pure, except the seams `exec.ts`, `log.ts`, `clock.ts`.
 *
 * @module
 */

export {};
