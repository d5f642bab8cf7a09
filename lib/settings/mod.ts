/**
 * `lib/settings/`: the folder's map. Pure.
 *
 * Owns: what each flag and rule-shaping setting means: the Go-compatible flag table (`flags.ts`),
 * the values flags and config keys share (chain names, port ranges, Go durations, output
 * addresses and interfaces, the kube-proxy mark), and how a flag and a key decide (`keys.ts`).
 *
 * May import: `base/`, `net/`.
 *
 * @module
 */

export {};
