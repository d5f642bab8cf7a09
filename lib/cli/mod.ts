/**
 * `lib/cli/`: the folder's map.
 *
 * Owns: what `main.ts` runs: the one-shot modes (`--dry-run`, `--check`, `--cleanup`,
 * `--explain`), which netfilter the node runs (composition), and the version line.
 *
 * May import: `base/`, `net/`, `settings/`, `config/`, `policy/`, `iptables/`, `nftables/`, `agent/`.
 *
 * @module
 */

export {};
