/**
 * `lib/nftables/`: the folder's map.
 *
 * Owns: The nftables dataplane: our own table per family, rendered as `nft -f` text, read back
 * from `nft -j` as hostile input, planned as element diffs or a whole-table replacement, and the
 * one client on the `Exec` seam.
 *
 * May import: `base/`, `net/`, `settings/`, `config/`, `policy/`. Pure, except the client.
 *
 * @module
 */

export {};
