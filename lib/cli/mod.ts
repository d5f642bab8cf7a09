/**
 * `lib/cli/`: the folder's map.
 *
 * Owns: What `main.ts` runs: the one-shot modes (`--dry-run`, `--check`,
 * `--cleanup`, `--explain`), which netfilter the node runs (composition), the version line, and
 * what `main.ts` dispatches to.
 *
 * May import: `base/`, `net/`, `settings/`, `config/`, `policy/`, `iptables/`, `nftables/`, `agent/`.
 *
 * Composition and printing; `version.ts` reads Deno's version.
 *
 * @module
 */

export {};
