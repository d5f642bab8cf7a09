import assert from "node:assert/strict";
import { Wakeup } from "../../lib/host/wakeup.ts";

const never = new AbortController().signal;

async function timed(promise: Promise<void>): Promise<number> {
  const started = performance.now();
  await promise;
  return performance.now() - started;
}

Deno.test("Wakeup.wait() resolves after the timeout when nothing fires", async () => {
  const elapsed = await timed(new Wakeup().wait(40, never));
  assert.ok(elapsed >= 35, `waited ${elapsed} ms`);
});

Deno.test("Wakeup.fire() during a wait ends it at once", async () => {
  const wakeup = new Wakeup();
  const waiting = timed(wakeup.wait(2_000, never));
  wakeup.fire();
  assert.ok((await waiting) < 100);
});

Deno.test("Wakeup.fire() while nobody waits makes the next wait return at once, once", async () => {
  const wakeup = new Wakeup();
  wakeup.fire();
  wakeup.fire();
  wakeup.fire();
  assert.ok((await timed(wakeup.wait(2_000, never))) < 20, "the busy-time triggers count");
  const elapsed = await timed(wakeup.wait(40, never));
  assert.ok(elapsed >= 35, `three triggers made one wake-up, not three (waited ${elapsed} ms)`);
});

Deno.test("Wakeup: a trigger that woke a wait is consumed", async () => {
  const wakeup = new Wakeup();
  const first = wakeup.wait(2_000, never);
  wakeup.fire();
  await first;
  const elapsed = await timed(wakeup.wait(40, never));
  assert.ok(elapsed >= 35, `waited ${elapsed} ms`);
});

Deno.test("Wakeup.wait() ends on abort, and at once on an aborted signal", async () => {
  const wakeup = new Wakeup();
  const controller = new AbortController();
  const waiting = timed(wakeup.wait(2_000, controller.signal));
  controller.abort();
  assert.ok((await waiting) < 100);
  assert.ok((await timed(wakeup.wait(2_000, controller.signal))) < 20);
});

Deno.test("Wakeup: a fire() after the wait ended by timeout wakes the next wait", async () => {
  const wakeup = new Wakeup();
  await wakeup.wait(5, never);
  wakeup.fire();
  assert.ok((await timed(wakeup.wait(2_000, never))) < 20);
});

Deno.test("Wakeup: a wait that timed out leaves no listener to fire into", async () => {
  const wakeup = new Wakeup();
  const controller = new AbortController();
  await wakeup.wait(5, controller.signal);
  // A stale resolver or listener would swallow this trigger or double-resolve; neither may happen.
  controller.abort();
  wakeup.fire();
  assert.ok((await timed(wakeup.wait(2_000, never))) < 20);
});
