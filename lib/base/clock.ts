/**
 * Time as a dependency (a `Clock`): tests wait in virtual time (tests/support/fake_clock.ts).
 *
 * @module
 */

/** Stops a timer that has not fired yet; calling it later, or twice, does nothing. */
export type CancelTimer = () => void;

/** Time as the agent sees it: a reading and two ways to wait. */
export interface Clock {
  /** Milliseconds on a monotonic scale with an arbitrary origin: only differences mean anything. */
  now(): number;
  /** Calls `fire` once, `ms` from now. */
  setTimer(ms: number, fire: () => void): CancelTimer;
  /** Resolves `ms` from now, or when `signal` aborts; never rejects (the caller checks it). */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/**
 * A sleep on any timer: the one place a wait meets an abort signal, so real and fake clocks agree.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sleepOn, systemClock } from "./clock.ts";
 *
 * const controller = new AbortController();
 * const sleeping = sleepOn(systemClock.setTimer, 60_000, controller.signal);
 * controller.abort();
 * assert.equal(await sleeping, undefined); // at once, not after a minute
 * ```
 */
export function sleepOn(
  setTimer: Clock["setTimer"],
  ms: number,
  signal?: AbortSignal,
): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      cancel();
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const cancel = setTimer(ms, done);
    signal?.addEventListener("abort", done);
  });
}

/** The process's own clock: `performance.now()` and `setTimeout`. */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer(ms, fire) {
    const id = setTimeout(fire, ms);
    return () => clearTimeout(id);
  },
  sleep: (ms, signal) => sleepOn(systemClock.setTimer, ms, signal),
};
