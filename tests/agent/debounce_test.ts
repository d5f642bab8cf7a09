import assert from "node:assert/strict";
import {
  type DebounceEvent,
  type DebouncePolicy,
  type DebounceState,
  debounceStep,
  defaultDebouncePolicy,
  idleDebounce,
} from "../../lib/agent/config_watch.ts";

const policy = defaultDebouncePolicy;

/** The armed delay (or "settle") after each event, feeding the state through. */
function steps(
  events: [DebounceEvent, number][],
  options: DebouncePolicy = policy,
): (number | "settle" | null)[] {
  let state: DebounceState = idleDebounce;
  return events.map(([event, now]) => {
    const step = debounceStep(state, event, now, options);
    state = step.state;
    return step.settle ? "settle" : step.armMs;
  });
}

Deno.test("debounce: the defaults are a 150 ms quiet period, a burst delays at most 4 periods", () => {
  assert.deepEqual(defaultDebouncePolicy, { quietMs: 150, maxPeriods: 4 });
});

Deno.test("debounce: table of bursts", () => {
  const cases: {
    name: string;
    events: [DebounceEvent, number][];
    want: (number | "settle" | null)[];
  }[] = [
    { name: "one event arms the quiet period", events: [["changed", 0]], want: [150] },
    {
      name: "a quick burst (kubelet's six events) restarts the quiet period each time",
      events: [["changed", 0], ["changed", 1], ["changed", 2], ["changed", 5], ["changed", 9]],
      want: [150, 150, 150, 150, 150],
    },
    {
      name: "the timer firing settles once and arms nothing",
      events: [["changed", 0], ["fired", 150]],
      want: [150, "settle"],
    },
    {
      name: "a stream that never pauses is cut at 4 periods from its first event",
      events: [["changed", 0], ["changed", 100], ["changed", 200], ["changed", 300], [
        "changed",
        500,
      ]],
      want: [150, 150, 150, 150, 100],
    },
    {
      name: "an event at the ceiling arms a zero delay",
      events: [["changed", 0], ["changed", 600]],
      want: [150, 0],
    },
    {
      name: "an event past the ceiling (a late timer) arms zero, never a negative delay",
      events: [["changed", 0], ["changed", 700]],
      want: [150, 0],
    },
    {
      name: "after settling, the next event opens a new burst with its own ceiling",
      events: [["changed", 0], ["changed", 500], ["fired", 600], ["changed", 601], [
        "changed",
        1100,
      ]],
      want: [150, 100, "settle", 150, 101],
    },
    {
      name: "a fired without a burst still settles (a timer armed before a reset)",
      events: [["fired", 0]],
      want: ["settle"],
    },
  ];
  for (const { name, events, want } of cases) assert.deepEqual(steps(events), want, name);
});

Deno.test("debounce: the state records the burst's first event and is cleared on settle", () => {
  const first = debounceStep(idleDebounce, "changed", 42, policy);
  assert.deepEqual(first.state, { burstStartedAt: 42 });
  const second = debounceStep(first.state, "changed", 50, policy);
  assert.deepEqual(second.state, { burstStartedAt: 42 });
  const fired = debounceStep(second.state, "fired", 200, policy);
  assert.deepEqual(fired, { state: idleDebounce, armMs: null, settle: true });
  assert.deepEqual(idleDebounce, { burstStartedAt: null }, "the shared idle state is untouched");
});

Deno.test("debounce: other policies scale the same way", () => {
  assert.deepEqual(
    steps([["changed", 0], ["changed", 40], ["changed", 80]], { quietMs: 50, maxPeriods: 2 }),
    [50, 50, 20],
  );
});
