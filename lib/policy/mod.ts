/**
 * `lib/policy/`: the folder's map.
 *
 * Owns: The desired state both dataplanes are built from (`DesiredChain`, link-local as a field),
 * the one `decide()` every answer about a packet comes from, the `--to-ports` ranges, and the
 * `Dataplane` seam: read our live state, plan purely, apply.
 *
 * May import: `base/`, `net/`, `config/`.
 *
 * Pure; `dataplane.ts` composes dataplanes through their interface only.
 *
 * @module
 */

export {};
