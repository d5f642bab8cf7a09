/**
 * `lib/config/`: the folder's map.
 *
 * Owns: the config directory and what it says: reading it (confined to it, `ip-masq*` names);
 * parsing each file with file:line:column provenance (a fast path for ConfigMap-shaped YAML, the
 * full YAML parse loaded only when needed); merging the files with findings; and whether two
 * reads found the same bytes. Pure, except `directory.ts`.
 *
 * May import: `base/`, `net/`, `settings/`.
 *
 * @module
 */

export {};
