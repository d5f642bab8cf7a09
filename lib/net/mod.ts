/**
 * `lib/net/`: the folder's map.
 *
 * Owns: Addresses and prefixes: CIDRs parsed as strictly as Go's `net.ParseCIDR`, single
 * addresses for `--explain`, and address intervals (what an nftables interval set holds).
 *
 * May import: `base/`. Pure.
 *
 * @module
 */

export {};
