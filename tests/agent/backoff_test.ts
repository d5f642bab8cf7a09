import assert from "node:assert/strict";
import {
  decideRetry,
  type FailureKind,
  initialRetryState,
  type RetryDecision,
  type RetryPolicy,
  type RetryState,
} from "../../lib/agent/backoff.ts";

const policy: RetryPolicy = { initialBackoffMs: 1000, maxBackoffMs: 30_000, budgetMs: 60_000 };

/** Feeds failures at the given instants through the decision, as the loop does. */
function run(events: [FailureKind, number][], options: RetryPolicy = policy): RetryDecision[] {
  let state: RetryState = initialRetryState(options);
  return events.map(([failure, now]) => {
    const decision = decideRetry(state, failure, now, options);
    if (decision.action === "retry") state = decision.state;
    return decision;
  });
}

function delays(decisions: RetryDecision[]): (number | string)[] {
  return decisions.map((decision) =>
    decision.action === "retry" ? decision.delayMs : decision.action
  );
}

Deno.test("backoff: the first failure waits the initial backoff and the state is not shared", () => {
  const state = initialRetryState(policy);
  assert.deepEqual(state, { backoffMs: 1000, failingSince: null });
  const decision = decideRetry(state, "failed", 5, policy);
  assert.deepEqual(decision, {
    action: "retry",
    reason: "failed",
    delayMs: 1000,
    state: { backoffMs: 2000, failingSince: 5 },
  });
  assert.deepEqual(state, { backoffMs: 1000, failingSince: null }, "the input is not mutated");
});

Deno.test("backoff: generic failures double up to the cap, clipped to the budget, then give up", () => {
  const budget = { ...policy, budgetMs: 120_000 };
  // Each retry happens exactly when the previous decision said.
  const at = [0, 1000, 3000, 7000, 15_000, 31_000, 61_000, 91_000, 120_000];
  const decisions = run(at.map((now) => ["failed", now]), budget);
  assert.deepEqual(delays(decisions), [
    1000,
    2000,
    4000,
    8000,
    16_000,
    30_000, // capped
    30_000,
    29_000, // only 29 s of the budget left: the last retry lands on its end
    "give-up",
  ]);
  assert.deepEqual(decisions.at(-1), { action: "give-up", budgetMs: 120_000 });
});

Deno.test("backoff: the budget counts from the first failure, not the latest", () => {
  const decisions = run([["failed", 0], ["failed", 59_999], ["failed", 60_000]]);
  assert.deepEqual(delays(decisions), [1000, 1, "give-up"]);
});

Deno.test("backoff: a held lock retries forever with capped doubling and spends no budget", () => {
  const lockAt = [0, 1000, 3000, 7000, 15_000, 31_000, 61_000, 91_000, 121_000, 1_000_000];
  const decisions = run(lockAt.map((now) => ["lock", now]));
  assert.deepEqual(
    delays(decisions),
    [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000, 30_000, 30_000],
  );
  for (const decision of decisions) {
    assert.equal(decision.action === "retry" && decision.reason, "lock");
    assert.equal(decision.action === "retry" && decision.state.failingSince, null);
  }
});

Deno.test("backoff: a generic failure after lock failures starts a full budget, at the grown delay", () => {
  const decisions = run([["lock", 0], ["lock", 1000], ["failed", 3000], ["failed", 7000]], {
    ...policy,
    budgetMs: 5000,
  });
  assert.deepEqual(delays(decisions), [1000, 2000, 4000, 1000]);
  const third = decisions[2];
  assert.ok(third.action === "retry");
  assert.equal(third.state.failingSince, 3000, "the budget starts at the first generic failure");
});

Deno.test("backoff: lock failures between generic ones do not reset the budget", () => {
  const decisions = run([["failed", 0], ["lock", 1000], ["failed", 3000], ["failed", 60_000]]);
  assert.deepEqual(delays(decisions), [1000, 2000, 4000, "give-up"]);
});

Deno.test("backoff: a success starts over (the loop takes the initial state again)", () => {
  const [first] = run([["failed", 0]]);
  assert.ok(first.action === "retry");
  const grown = decideRetry(first.state, "failed", 1000, policy);
  assert.ok(grown.action === "retry" && grown.delayMs === 2000);
  const afterSuccess = decideRetry(initialRetryState(policy), "failed", 500_000, policy);
  assert.ok(afterSuccess.action === "retry");
  assert.equal(afterSuccess.delayMs, 1000);
  assert.equal(afterSuccess.state.failingSince, 500_000);
});

Deno.test("backoff: a fatal failure is fatal in any state", () => {
  const states: RetryState[] = [
    initialRetryState(policy),
    { backoffMs: 30_000, failingSince: 0 },
    { backoffMs: 4000, failingSince: null },
  ];
  for (const state of states) {
    assert.deepEqual(decideRetry(state, "fatal", 10, policy), { action: "fatal" });
  }
});

Deno.test("backoff: a zero budget gives up on the first generic failure", () => {
  assert.deepEqual(delays(run([["failed", 0]], { ...policy, budgetMs: 0 })), ["give-up"]);
});

Deno.test("a budget clipped at a fractional instant still waits whole milliseconds", () => {
  const policy = { initialBackoffMs: 1000, maxBackoffMs: 30_000, budgetMs: 3000 };
  const first = decideRetry(initialRetryState(policy), "failed", 0.5, policy);
  if (first.action !== "retry") throw new Error("expected a retry");
  const second = decideRetry(first.state, "failed", 1025.73, policy);
  if (second.action !== "retry") throw new Error("expected a second retry");
  assert.equal(second.delayMs, 1975, "ceil(3000.5 - 1025.73)");
});
