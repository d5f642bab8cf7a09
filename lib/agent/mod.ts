/**
 * `lib/agent/`: the folder's map.
 *
 * Owns: the long-running reconcile loop, its timing decisions (debounce, backoff, GC schedule)
 * as pure steps of (state, event, now), what it logs once per change, and the signal seam.
 *
 * May import: `base/`, `net/`, `settings/`, `config/`, `policy/`, `iptables/`, `nftables/`.
 *
 * @module
 */

export {};
