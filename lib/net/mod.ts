/**
 * `lib/net/`: the folder's map.
 *
 * Owns: Addresses and prefixes: CIDR parsing with Go `net.ParseCIDR` strictness and canonical
 * text, single addresses for `--explain`, and address intervals (the form an nftables interval set
 * holds).
 *
 * May import: `base/`.
 *
 * Pure.
 *
 * @module
 */

export {};
