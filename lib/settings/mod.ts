/**
 * `lib/settings/`: the folder's map.
 *
 * Owns: What each flag and rule-shaping setting means, wherever it is given: the
 * Go-`flag`-compatible flag table (`flags.ts`, `AgentFlags`), the values flags and config keys
 * share (chain names, port ranges, Go durations and the resync bounds, output addresses and
 * interfaces, the kube-proxy mark), and the rule that decides a flag against a config key
 * (`keys.ts`).
 *
 * May import: `base/`, `net/`.
 *
 * Pure.
 *
 * @module
 */

export {};
