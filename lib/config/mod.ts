/**
 * `lib/config/`: the folder's map.
 *
 * Owns: The config directory and what it says: reading the directory (confined to it, `ip-masq*`
 * names), parsing and validating each file with file:line:column provenance, merging the files
 * into one effective config with findings, Go durations, and whether two reads found the same
 * bytes.
 *
 * May import: `base/`, `net/`.
 *
 * Pure, except `directory.ts`, the directory reader and watch.
 *
 * @module
 */

export {};
