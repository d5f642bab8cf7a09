/**
 * `lib/config/`: the folder's map.
 *
 * Owns: the config directory and what it says: reading it, parsing each file with provenance,
 * merging the files with findings, whether two reads found the same bytes. Pure but `directory.ts`.
 *
 * May import: `base/`, `net/`, `settings/`.
 *
 * @module
 */

export {};
