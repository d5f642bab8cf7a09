import assert from "node:assert/strict";
import { FakeClock } from "../support/fake_clock.ts";

Deno.test("FakeClock: time stands still until advanced, then fires what is due, in order", async () => {
  const clock = new FakeClock(0);
  const fired: string[] = [];
  clock.setTimer(30, () => fired.push(`b@${clock.now()}`));
  clock.setTimer(10, () => fired.push(`a@${clock.now()}`));
  clock.setTimer(30, () => fired.push(`c@${clock.now()}`));
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.deepEqual(fired, [], "real time passing changes nothing");
  assert.equal(clock.now(), 0);
  await clock.advance(29);
  assert.deepEqual(fired, ["a@10"]);
  assert.equal(clock.now(), 29);
  await clock.advance(1);
  assert.deepEqual(fired, ["a@10", "b@30", "c@30"], "same due time: the order they were set");
  assert.deepEqual(clock.pending(), []);
});

Deno.test("FakeClock: a timer set by a firing one fires within the same advance if it is due", async () => {
  const clock = new FakeClock(0);
  const fired: number[] = [];
  const again = () => {
    fired.push(clock.now());
    if (fired.length < 5) clock.setTimer(10, again);
  };
  clock.setTimer(10, again);
  await clock.advance(35);
  assert.deepEqual(fired, [10, 20, 30]);
  assert.deepEqual(clock.pending(), [{ kind: "timer", dueAt: 40, ms: 10 }]);
});

Deno.test("FakeClock: promise continuations of a sleep run before the next firing", async () => {
  const clock = new FakeClock(0);
  const seen: number[] = [];
  (async () => {
    for (let i = 0; i < 3; i++) {
      await clock.sleep(100);
      seen.push(clock.now());
    }
  })();
  await clock.advance(1000);
  assert.deepEqual(seen, [100, 200, 300]);
});

Deno.test("FakeClock: cancel and abort remove what is pending", async () => {
  const clock = new FakeClock(0);
  let fired = false;
  const cancel = clock.setTimer(10, () => fired = true);
  const controller = new AbortController();
  let slept = false;
  const sleeping = clock.sleep(10_000, controller.signal).then(() => slept = true);
  assert.deepEqual(clock.pending().map((wait) => wait.kind), ["timer", "sleep"]);
  cancel();
  cancel();
  controller.abort();
  await sleeping;
  assert.ok(slept, "an abort ends the sleep without advancing time");
  assert.equal(clock.now(), 0);
  assert.deepEqual(clock.pending(), []);
  await clock.advance(20_000);
  assert.equal(fired, false);
});

Deno.test("FakeClock: runNext jumps to the earliest pending; negative delays are due now", async () => {
  const clock = new FakeClock(500);
  const fired: number[] = [];
  clock.setTimer(-5, () => fired.push(clock.now()));
  clock.setTimer(250, () => fired.push(clock.now()));
  await clock.runNext();
  assert.deepEqual(fired, [500]);
  await clock.runNext();
  assert.deepEqual(fired, [500, 750]);
  await assert.rejects(() => clock.runNext(), /nothing is pending/);
  await assert.rejects(() => clock.advance(-1), RangeError);
});

Deno.test("FakeClock: fired() lists what fired, not what was cancelled", async () => {
  const clock = new FakeClock(0);
  clock.setTimer(10, () => {});
  const cancel = clock.setTimer(20, () => {});
  const sleeping = clock.sleep(30);
  cancel();
  await clock.advance(30);
  await sleeping;
  assert.deepEqual(clock.fired(), [
    { kind: "timer", dueAt: 10, ms: 10 },
    { kind: "sleep", dueAt: 30, ms: 30 },
  ]);
});
