/**
 * `lib/base/`: the folder's map.
 *
 * Owns: What every concern shares and none owns: the `Result` shape, quoting user input for
 * messages, provenance (`Located`, `SourceLocation`), Go's strconv pieces, the exit-code policy
 * and the printer of error chains, the configuration's problems (`ConfigProblem`,
 * `ConfigError`), and the seams under every effect: `Exec` (processes),
 * `runTool`/`ToolError` (one netfilter program and its one error type), `Clock` (time) and the
 * logger.
 *
 * May import: nothing outside this folder.
 *
 * Effects live here only as seams: `exec.ts` (Deno.Command) and `log.ts` (stderr); `clock.ts`
 * wraps timers. Everything else is pure.
 *
 * @module
 */

export {};
