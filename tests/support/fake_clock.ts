/**
 * A virtual `Clock` for tests: time stands still until the test advances it,
 * and then every timer and sleep that falls due fires in order (by due time,
 * then by the order they were set), each followed by a turn of the real event
 * loop so the promise continuations it wakes can set further timers within
 * the same advance.
 *
 * Timers (`setTimer`, the debounce) and sleeps (`sleep`, the loop's wait) are
 * told apart in `pending()`, so a test can say "the loop is parked" or "only
 * the debounce is pending" without knowing the milliseconds involved.
 *
 * @module
 */

import { type CancelTimer, type Clock, sleepOn } from "../../lib/base/clock.ts";

export interface PendingWait {
  readonly kind: "timer" | "sleep";
  /** The virtual instant it fires at. */
  readonly dueAt: number;
  /** What the caller asked for. */
  readonly ms: number;
}

interface Entry extends PendingWait {
  readonly order: number;
  readonly fire: () => void;
}

/** More firings than any test needs in one advance: beyond it, a runaway loop. */
const maxFiringsPerAdvance = 100_000;

/** One real macrotask: every microtask the previous firing queued has run by then. */
function realTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

export class FakeClock implements Clock {
  #now: number;
  #order = 0;
  #entries: Entry[] = [];
  #fired: PendingWait[] = [];

  /** `start` is an arbitrary origin; not 0 by default, so no code can mistake it for "unset". */
  constructor(start = 1_000_000) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimer(ms: number, fire: () => void): CancelTimer {
    return this.#schedule("timer", ms, fire);
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepOn((delay, fire) => this.#schedule("sleep", delay, fire), ms, signal);
  }

  /** What is waiting to fire, earliest first. */
  pending(): PendingWait[] {
    return this.#sorted().map(({ kind, dueAt, ms }) => ({ kind, dueAt, ms }));
  }

  /** What has fired so far, in order (cancelled and aborted waits are not in it). */
  fired(): PendingWait[] {
    return [...this.#fired];
  }

  /** Moves time forward by `ms`, firing everything due on the way, in order. */
  async advance(ms: number): Promise<void> {
    if (!(ms >= 0)) throw new RangeError(`cannot advance by ${ms} ms`);
    await this.#advanceTo(this.#now + ms);
  }

  /** Moves time to the earliest pending timer or sleep and fires it (and whatever is due with it). */
  async runNext(): Promise<void> {
    const next = this.#sorted()[0];
    if (next === undefined) throw new Error("nothing is pending on the fake clock");
    await this.#advanceTo(next.dueAt);
  }

  async #advanceTo(target: number): Promise<void> {
    for (let fired = 0;; fired++) {
      const next = this.#sorted()[0];
      if (next === undefined || next.dueAt > target) break;
      // Code that keeps re-arming a due timer would spin here forever without moving time.
      if (fired === maxFiringsPerAdvance) {
        throw new Error(
          `the fake clock fired ${fired} timers or sleeps in one advance (to ${target}); ` +
            `something keeps re-arming a due one`,
        );
      }
      this.#entries = this.#entries.filter((entry) => entry !== next);
      this.#now = next.dueAt;
      this.#fired.push({ kind: next.kind, dueAt: next.dueAt, ms: next.ms });
      next.fire();
      await realTurn();
    }
    this.#now = target;
    await realTurn();
  }

  #schedule(kind: Entry["kind"], ms: number, fire: () => void): CancelTimer {
    // As setTimeout does: a negative or NaN delay means "as soon as possible".
    const delay = ms > 0 ? ms : 0;
    const entry: Entry = { kind, ms, dueAt: this.#now + delay, order: this.#order++, fire };
    this.#entries.push(entry);
    return () => {
      this.#entries = this.#entries.filter((other) => other !== entry);
    };
  }

  #sorted(): Entry[] {
    return [...this.#entries].sort((a, b) => a.dueAt - b.dueAt || a.order - b.order);
  }
}
