/**
 * `lib/config/`: the folder's map.
 *
 * Owns: The config directory and what it says: reading the directory (confined to it, `ip-masq*`
 * names); parsing and validating each file with file:line:column provenance (a fast path for
 * ConfigMap-shaped YAML, the full YAML parse loaded only when a file needs it); merging the files
 * into one effective config with findings; and whether two reads found the same bytes.
 *
 * May import: `base/`, `net/`, `settings/`.
 *
 * Pure, except `directory.ts`, the directory reader and watch.
 *
 * @module
 */

export {};
