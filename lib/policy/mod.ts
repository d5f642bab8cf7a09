/**
 * `lib/policy/`: the folder's map.
 *
 * Owns: The desired state both dataplanes are built from (`chain.ts`: `DesiredChain`, link-local
 * as a field, the longest-prefix rule order, the `--to-ports` split), loading it from the
 * directory's contents (`desired.ts`), the one `decide()` every answer about a packet comes from,
 * and the `Dataplane` seam: read our live state, plan purely, apply.
 *
 * May import: `base/`, `net/`, `settings/`, `config/`.
 *
 * Pure; `dataplane.ts` composes dataplanes through their interface only.
 *
 * @module
 */

export {};
