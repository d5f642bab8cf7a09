/**
 * `lib/cli/`: the folder's map.
 *
 * Owns: what `main.ts` runs: the one-shot modes, which netfilter the node runs, the version line.
 *
 * May import: `base/`, `net/`, `settings/`, `config/`, `policy/`, `iptables/`, `nftables/`, `agent/`.
 *
 * @module
 */

export {};
