/**
 * `lib/policy/`: the folder's map.
 *
 * Owns: the desired state both dataplanes are built from (`chain.ts`), loading it from the
 * config directory (`desired.ts`), the one `decide()` about a packet, and the `Dataplane` seam.
 *
 * May import: `base/`, `net/`, `settings/`, `config/`. Pure; `dataplane.ts` composes dataplanes
 * through their interface only.
 *
 * @module
 */

export {};
