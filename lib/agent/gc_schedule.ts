/**
 * When the agent asks V8 for a full garbage collection ({@link GcPolicy}), as a pure decision.
 * Left alone, V8 collects this mostly idle agent's little garbage so late that RSS climbs for
 * thousands of reconciles (docs/benchmarks.md, item 3). RSS in MiB at reconcile 100 → 1000 under
 * `--lite-mode`, `deno task bench --only=memory --reconciles=1000 --backends=nft`: 57.7 → 60.7
 * (a sawtooth up to 64.9) without these collections, 57.5 → 57.3 (peak 58.3) with them. One
 * costs about 20 ms of CPU (a 5-10 ms pause); ten reconciles leave well under 1 MB of garbage.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { gcAfterReconcile, gcCollected, initialGcState } from "./gc_schedule.ts";
 * const policy = { everyReconciles: 2, minIntervalMs: 1000 };
 * let step = gcAfterReconcile(initialGcState, 0, policy);
 * assert.equal(step.collect, false);
 * step = gcAfterReconcile(step.state, 10, policy);
 * assert.equal(step.collect, true);
 * assert.equal(gcCollected(15).lastGcAt, 15); // the instant the collection ended
 * ```
 *
 * @module
 */

/** How often to collect: every so many reconciles, but not more often than the interval. */
export interface GcPolicy {
  /** Collect after this many reconciles since the last collection. */
  readonly everyReconciles: number;
  /** And only when this long has passed since the last one ended. */
  readonly minIntervalMs: number;
}

/** Every 10th reconcile, at most once a second (the measurements are in the module doc). */
export const defaultGcPolicy: GcPolicy = { everyReconciles: 10, minIntervalMs: 1000 };

/** What the schedule remembers between reconciles. */
export interface GcState {
  /** Reconciles counted since the last collection. */
  readonly reconcilesSinceGc: number;
  /** When the last collection ended; -Infinity before the first. */
  readonly lastGcAt: number;
}

/** Before the first reconcile: nothing counted, no collection yet. */
export const initialGcState: GcState = { reconcilesSinceGc: 0, lastGcAt: -Infinity };

/** Counts a reconcile at `now`; `collect` says whether to collect now. */
export function gcAfterReconcile(
  state: GcState,
  now: number,
  policy: GcPolicy,
): { readonly collect: boolean; readonly state: GcState } {
  const counted = { ...state, reconcilesSinceGc: state.reconcilesSinceGc + 1 };
  const collect = counted.reconcilesSinceGc >= policy.everyReconciles &&
    now - state.lastGcAt >= policy.minIntervalMs;
  return { collect, state: counted };
}

/** The state after a collection that ended at `now`: the interval counts from its end. */
export function gcCollected(now: number): GcState {
  return { reconcilesSinceGc: 0, lastGcAt: now };
}
