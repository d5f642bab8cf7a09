import assert from "node:assert/strict";
import { Wakeup } from "../../lib/agent/agent.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { within } from "../../lab/wait.ts";

const never = new AbortController().signal;

/** Tracks whether a promise has resolved, so a test can look without awaiting it. */
function track(promise: Promise<void>): { readonly done: boolean } {
  const state = { done: false };
  promise.then(() => state.done = true);
  return state;
}

/** Lets resolved promises' continuations run; virtual time does not move. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

Deno.test("Wakeup.wait() resolves after exactly the timeout when nothing fires", async () => {
  const clock = new FakeClock();
  const waiting = track(new Wakeup(clock).wait(40, never));
  await clock.advance(39);
  assert.equal(waiting.done, false);
  await clock.advance(1);
  assert.equal(waiting.done, true);
});

Deno.test("Wakeup.fire() during a wait ends it at once", async () => {
  const clock = new FakeClock();
  const wakeup = new Wakeup(clock);
  const waiting = track(wakeup.wait(2_000, never));
  wakeup.fire();
  await settle();
  assert.equal(waiting.done, true);
  assert.deepEqual(clock.pending(), [], "the wait's sleep is gone, not left to fire later");
});

Deno.test("Wakeup.fire() while nobody waits makes the next wait return at once, once", async () => {
  const clock = new FakeClock();
  const wakeup = new Wakeup(clock);
  wakeup.fire();
  wakeup.fire();
  wakeup.fire();
  const first = track(wakeup.wait(2_000, never));
  await settle();
  assert.equal(first.done, true, "the busy-time triggers count");
  const second = track(wakeup.wait(40, never));
  await clock.advance(39);
  assert.equal(second.done, false, "three triggers made one wake-up, not three");
  await clock.advance(1);
  assert.equal(second.done, true);
});

Deno.test("Wakeup: a trigger that woke a wait is consumed", async () => {
  const clock = new FakeClock();
  const wakeup = new Wakeup(clock);
  const first = wakeup.wait(2_000, never);
  wakeup.fire();
  await first;
  const second = track(wakeup.wait(40, never));
  await clock.advance(39);
  assert.equal(second.done, false);
  await clock.advance(1);
  assert.equal(second.done, true);
});

Deno.test("Wakeup.wait() ends on abort, and at once on an aborted signal", async () => {
  const clock = new FakeClock();
  const wakeup = new Wakeup(clock);
  const controller = new AbortController();
  const waiting = track(wakeup.wait(2_000, controller.signal));
  controller.abort();
  await settle();
  assert.equal(waiting.done, true);
  const again = track(wakeup.wait(2_000, controller.signal));
  await settle();
  assert.equal(again.done, true);
  assert.deepEqual(clock.pending(), []);
  assert.equal(clock.now(), new FakeClock().now(), "no virtual time passed");
});

Deno.test("Wakeup: a fire() after the wait ended by timeout wakes the next wait", async () => {
  const clock = new FakeClock();
  const wakeup = new Wakeup(clock);
  const first = wakeup.wait(5, never);
  await clock.advance(5);
  await first;
  wakeup.fire();
  const second = track(wakeup.wait(2_000, never));
  await settle();
  assert.equal(second.done, true);
});

Deno.test("Wakeup: a wait that timed out leaves no listener to fire into", async () => {
  const clock = new FakeClock();
  const wakeup = new Wakeup(clock);
  const controller = new AbortController();
  const first = wakeup.wait(5, controller.signal);
  await clock.advance(5);
  await first;
  // A stale resolver or listener would swallow this trigger or double-resolve; neither may happen.
  controller.abort();
  wakeup.fire();
  const next = track(wakeup.wait(2_000, never));
  await settle();
  assert.equal(next.done, true);
});

Deno.test("Wakeup: without a clock it waits on the system clock, and fire() ends that wait", async () => {
  const wakeup = new Wakeup();
  const controller = new AbortController();
  const waiting = wakeup.wait(60_000, controller.signal);
  wakeup.fire();
  // fire() ends the wait at once; the bound (far above a turn of the event loop, far below the
  // 60 s timeout) only turns a broken fire() into a prompt failure instead of a minute's pass.
  try {
    await within("fire() to end a 60 s wait on the system clock", waiting, 5_000);
  } finally {
    controller.abort();
    await waiting;
  }
});
