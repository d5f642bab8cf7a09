/**
 * `lib/iptables/`: the folder's map.
 *
 * Owns: The iptables dataplane: the backend (nft or legacy) and its detection, the desired chain
 * as `iptables-save` text, reading our chain and jump back, planning one `iptables-restore
 * --noflush` transaction, tracing a packet through the live listing, the client on `Exec`.
 *
 * May import: `base/`, `net/`, `settings/`, `config/`, `policy/`. Pure, except the client and mode
 * detection, which run programs through `Exec` only.
 *
 * @module
 */

export {};
