/**
 * `lib/config/`: the folder's map.
 *
 * Owns: What the agent is told, from the command line and the config directory: the
 * Go-`flag`-compatible flag table (`flags.ts`) and the values flags and keys share (chain names,
 * port ranges, Go durations); reading the directory (confined to it, `ip-masq*` names); parsing
 * and validating each file with file:line:column provenance; merging the files into one
 * effective config with findings; resolving the rule-shaping settings a flag and a key may both
 * give (`settings.ts`); and whether two reads found the same bytes.
 *
 * May import: `base/`, `net/`.
 *
 * Pure, except `directory.ts`, the directory reader and watch.
 *
 * @module
 */

export {};
