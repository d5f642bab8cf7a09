/**
 * `lib/base/`: the folder's map.
 *
 * Owns: what all concerns share: `Result`, quoting user input, provenance, Go's strconv, exit
 * codes, error chains, config problems, and the effect seams (`Exec`, `runTool`, `Clock`, logger).
 *
 * May import: nothing outside this folder. Pure, except the seams `exec.ts`, `log.ts`, `clock.ts`.
 *
 * @module
 */

export {};
