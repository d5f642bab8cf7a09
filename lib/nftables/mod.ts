/**
 * `lib/nftables/`: the folder's map.
 *
 * Owns: The nftables dataplane: our own table per family as `nft -f` text, read back from `nft -j`
 * as hostile input, planned as element diffs or a whole-table replacement; its client on `Exec`.
 *
 * May import: `base/`, `net/`, `settings/`, `config/`, `policy/`. Pure, except the client.
 *
 * @module
 */

export {};
