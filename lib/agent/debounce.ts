/**
 * When a burst of config directory events becomes one reconcile, as a pure
 * decision. kubelet's `..data` swap emits about six events within a few
 * milliseconds; one reconcile should follow them all. Each event restarts the
 * quiet period, but a stream of events that never pauses must not postpone
 * the reconcile forever: the first event of a burst bounds the wait at
 * `maxPeriods` quiet periods.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { debounceStep, idleDebounce } from "./debounce.ts";
 * const policy = { quietMs: 150, maxPeriods: 4 };
 * const first = debounceStep(idleDebounce, "changed", 0, policy);
 * assert.equal(first.armMs, 150);
 * const late = debounceStep(first.state, "changed", 500, policy);
 * assert.equal(late.armMs, 100); // the burst began at 0: fire by 600 at the latest
 * ```
 *
 * @module
 */

/** How long the directory must be quiet, and how long a burst may postpone the reconcile. */
export interface DebouncePolicy {
  /** How long the directory must stay quiet before the reconcile. */
  readonly quietMs: number;
  /** A burst delays the reconcile by at most this many quiet periods from its first event. */
  readonly maxPeriods: number;
}

/** kubelet's swap settles well within 150 ms; a burst waits at most 600 ms. */
export const defaultDebouncePolicy: DebouncePolicy = { quietMs: 150, maxPeriods: 4 };

/** Whether a burst is open, and since when. */
export interface DebounceState {
  /** When the current burst's first event came; null while no burst is open. */
  readonly burstStartedAt: number | null;
}

/** No burst open: the state before the first event and after each settle. */
export const idleDebounce: DebounceState = { burstStartedAt: null };

/** `changed`: an event arrived. `fired`: the timer armed by an earlier step went off. */
export type DebounceEvent = "changed" | "fired";

/** What the shell does after one event: keep `state`, (re)arm a timer, reconcile. */
export interface DebounceStep {
  /** The state to keep for the next event. */
  readonly state: DebounceState;
  /** Replace any armed timer by one that fires this many ms from now; null: arm nothing. */
  readonly armMs: number | null;
  /** Reconcile now. */
  readonly settle: boolean;
}

/** The step after `event` at `now`. */
export function debounceStep(
  state: DebounceState,
  event: DebounceEvent,
  now: number,
  policy: DebouncePolicy,
): DebounceStep {
  if (event === "fired") return { state: idleDebounce, armMs: null, settle: true };
  const burstStartedAt = state.burstStartedAt ?? now;
  const ceilingMs = burstStartedAt + policy.maxPeriods * policy.quietMs - now;
  return {
    state: { burstStartedAt },
    armMs: Math.max(0, Math.min(policy.quietMs, ceilingMs)),
    settle: false,
  };
}
