/**
 * What the loop does after a failed reconcile, as a pure decision: a held xtables lock is
 * another program's transaction, so its waits neither start nor spend the budget (one resync
 * interval) for retrying any other iptables failure; then the agent gives up (exit 1: the
 * DaemonSet restarts it, the failure shows). Delays double up to the cap.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decideRetry, initialRetryState } from "./backoff.ts";
 * const policy = { initialBackoffMs: 1000, maxBackoffMs: 30_000, budgetMs: 60_000 };
 * const first = decideRetry(initialRetryState(policy), "failed", 0, policy);
 * assert(first.action === "retry" && first.delayMs === 1000);
 * const second = decideRetry(first.state, "failed", 1000, policy);
 * assert(second.action === "retry" && second.delayMs === 2000); // doubled
 * ```
 *
 * @module
 */

/** How a reconcile failed; `fatal` (a missing tool, an error not iptables') will not heal. */
export type FailureKind = "lock" | "failed" | "fatal";

/** The delays and the budget the decision works with. */
export interface RetryPolicy {
  /** The first retry's delay. */
  readonly initialBackoffMs: number;
  /** Doubling stops here. */
  readonly maxBackoffMs: number;
  /** How long failures other than the lock may go on before the agent gives up. */
  readonly budgetMs: number;
}

/** What the decision remembers between failures. */
export interface RetryState {
  /** The next delay before the budget clips it. */
  readonly backoffMs: number;
  /** When the first failure that counts against the budget happened; null while none has. */
  readonly failingSince: number | null;
}

/** Retry after `delayMs` (carrying `state` on), give up (exit 1), or fail at once. */
export type RetryDecision =
  | Readonly<{ action: "retry"; reason: "lock" | "failed"; delayMs: number; state: RetryState }>
  | Readonly<{ action: "give-up"; budgetMs: number }>
  | Readonly<{ action: "fatal" }>;

/** Before any failure, and after every success. */
export function initialRetryState(policy: Pick<RetryPolicy, "initialBackoffMs">): RetryState {
  return { backoffMs: policy.initialBackoffMs, failingSince: null };
}

/** The decision after a reconcile failed with `failure` at `now`. */
export function decideRetry(
  state: RetryState,
  failure: FailureKind,
  now: number,
  policy: RetryPolicy,
): RetryDecision {
  const doubled = (ms: number) => Math.min(ms * 2, policy.maxBackoffMs);
  if (failure === "fatal") return { action: "fatal" };
  if (failure === "lock") {
    const next = { ...state, backoffMs: doubled(state.backoffMs) };
    return { action: "retry", reason: "lock", delayMs: state.backoffMs, state: next };
  }
  const failingSince = state.failingSince ?? now;
  const budgetLeftMs = failingSince + policy.budgetMs - now;
  if (budgetLeftMs <= 0) return { action: "give-up", budgetMs: policy.budgetMs };
  // The last retry lands at the end of the budget, so the agent gives up on time. Whole
  // milliseconds: the clock is fractional (performance.now), the log line and timers are not.
  const delayMs = Math.min(state.backoffMs, Math.ceil(budgetLeftMs));
  const next = { backoffMs: doubled(delayMs), failingSince };
  return { action: "retry", reason: "failed", delayMs, state: next };
}
