import assert from "node:assert/strict";
import {
  defaultGcPolicy,
  gcAfterReconcile,
  gcCollected,
  type GcState,
  initialGcState,
} from "../../lib/agent/gc_schedule.ts";

/** Runs reconciles at the given instants; returns the instants a collection happened. */
function collections(reconcileAt: number[], gcTakesMs = 0): number[] {
  let state: GcState = initialGcState;
  const collected: number[] = [];
  for (const now of reconcileAt) {
    const step = gcAfterReconcile(state, now, defaultGcPolicy);
    state = step.state;
    if (step.collect) {
      collected.push(now);
      state = gcCollected(now + gcTakesMs);
    }
  }
  return collected;
}

const range = (count: number, at: (i: number) => number) =>
  Array.from({ length: count }, (_, i) => at(i));

Deno.test("gc schedule: the defaults are every 10th reconcile, at most once a second", () => {
  assert.deepEqual(defaultGcPolicy, { everyReconciles: 10, minIntervalMs: 1000 });
});

Deno.test("gc schedule: table", () => {
  const cases: { name: string; at: number[]; gcTakesMs?: number; want: number[] }[] = [
    { name: "nine reconciles: none", at: range(9, (i) => i * 5000), want: [] },
    { name: "the 10th reconcile collects", at: range(10, (i) => i * 5000), want: [45_000] },
    {
      name: "every 10th after that, when they are far apart",
      at: range(30, (i) => i * 5000),
      want: [45_000, 95_000, 145_000],
    },
    {
      name: "a burst within a second gets one collection, the next comes a second later",
      at: [...range(25, (i) => i), 999 + 9, 1000 + 9],
      want: [9, 1009],
    },
    {
      name: "the interval counts from the end of the collection",
      at: [...range(10, (i) => i), ...range(10, (i) => 1009 + i), 1029],
      gcTakesMs: 20,
      want: [9, 1029],
    },
    {
      name: "the first collection needs no interval before it (the schedule starts at -Infinity)",
      at: range(10, () => 0),
      want: [0],
    },
  ];
  for (const { name, at, gcTakesMs, want } of cases) {
    assert.deepEqual(collections(at, gcTakesMs), want, name);
  }
});

Deno.test("gc schedule: reconciles keep counting while a collection waits for the interval", () => {
  let state = gcCollected(0);
  for (let i = 0; i < 15; i++) {
    const step = gcAfterReconcile(state, 500, defaultGcPolicy);
    assert.equal(step.collect, false);
    state = step.state;
  }
  assert.equal(state.reconcilesSinceGc, 15);
  assert.equal(gcAfterReconcile(state, 999, defaultGcPolicy).collect, false);
  assert.equal(gcAfterReconcile(state, 1000, defaultGcPolicy).collect, true);
});
