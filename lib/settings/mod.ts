/**
 * `lib/settings/`: the folder's map. Pure.
 *
 * Owns: what each flag and rule-shaping setting means, wherever it is given: the Go-compatible
 * flag table (`flags.ts`), the values flags and config keys share (chain names, port ranges, Go
 * durations, output addresses and interfaces, the kube-proxy mark), and how a flag and a config
 * key decide together (`keys.ts`).
 *
 * May import: `base/`, `net/`.
 *
 * @module
 */

export {};
