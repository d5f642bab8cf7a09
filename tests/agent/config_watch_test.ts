/**
 * The watch, the debounce and re-watching, in virtual time with a scripted
 * watcher: exact instants, no inotify. The real watcher on a real directory
 * is covered end to end in agent_test.ts.
 */

import assert from "node:assert/strict";
import { ConfigWatch } from "../../lib/agent/config_watch.ts";
import type { DirectoryWatch } from "../../lib/config/directory.ts";
import { defaultDebouncePolicy } from "../../lib/agent/config_watch.ts";
import { CaptureLog } from "../support/capture_log.ts";
import { FakeClock } from "../support/fake_clock.ts";

/** What `watch()` hands out: the test emits events and decides staleness. */
class ScriptedWatch implements DirectoryWatch {
  stale = false;
  closed = false;
  constructor(readonly emit: () => void) {}
  close(): void {
    this.closed = true;
  }
  isStale(): Promise<boolean> {
    return Promise.resolve(this.stale);
  }
}

function setUp(options: { failStarts?: number } = {}) {
  const clock = new FakeClock(0);
  const log = new CaptureLog();
  const watches: ScriptedWatch[] = [];
  const settledAt: number[] = [];
  let failStarts = options.failStarts ?? 0;
  const watch = new ConfigWatch({
    dir: "/etc/config",
    log,
    clock,
    debounce: defaultDebouncePolicy,
    onSettled: () => settledAt.push(clock.now()),
    watch: (dir, onChange) => {
      assert.equal(dir, "/etc/config");
      if (failStarts > 0) {
        failStarts--;
        return Promise.reject(new Error("No such file or directory (os error 2)"));
      }
      const handle = new ScriptedWatch(onChange);
      watches.push(handle);
      return Promise.resolve(handle);
    },
  });
  const current = () => {
    const handle = watches.at(-1);
    if (!handle) throw new Error("no watch started");
    return handle;
  };
  return { clock, log, watches, settledAt, watch, current };
}

/** Emits an event at each given virtual instant. */
async function emitAt(t: ReturnType<typeof setUp>, instants: number[]) {
  for (const at of instants) {
    await t.clock.advance(at - t.clock.now());
    t.current().emit();
  }
}

Deno.test("config watch: one event settles after exactly the quiet period", async () => {
  const t = setUp();
  await t.watch.ensure();
  await emitAt(t, [1000]);
  await t.clock.advance(149);
  assert.deepEqual(t.settledAt, []);
  await t.clock.advance(1);
  assert.deepEqual(t.settledAt, [1150]);
  assert.deepEqual(t.clock.pending(), [], "nothing left armed");
});

Deno.test("config watch: kubelet's burst of six events becomes one settle, after the last", async () => {
  const t = setUp();
  await t.watch.ensure();
  await emitAt(t, [0, 1, 2, 3, 5, 8]);
  await t.clock.advance(10_000);
  assert.deepEqual(t.settledAt, [158]);
});

Deno.test("config watch: a stream that never pauses settles 4 quiet periods after its first event", async () => {
  const t = setUp();
  await t.watch.ensure();
  // Every 100 ms, never quiet for 150 ms, for 1.5 s.
  await emitAt(t, Array.from({ length: 16 }, (_, i) => 100 * i));
  await t.clock.advance(10_000);
  // 0 opens a burst, cut at 600; the event right after that settle opens the next, cut at 1200;
  // the one at 1200 opens a third, which ends normally: 150 ms after the last event, at 1500.
  assert.deepEqual(t.settledAt, [600, 1200, 1650]);
});

Deno.test("config watch: bursts separated by quiet get one settle each", async () => {
  const t = setUp();
  await t.watch.ensure();
  await emitAt(t, [0, 10, 1000, 1010, 1020]);
  await t.clock.advance(10_000);
  assert.deepEqual(t.settledAt, [160, 1170]);
});

Deno.test("config watch: ensure() keeps one watch while it is fresh", async () => {
  const t = setUp();
  await t.watch.ensure();
  await t.watch.ensure();
  await t.watch.ensure();
  assert.equal(t.watches.length, 1);
  assert.deepEqual(t.log.lines, []);
});

Deno.test("config watch: a removed or replaced directory is watched anew, once, and said so", async () => {
  const t = setUp();
  await t.watch.ensure();
  const first = t.current();
  first.stale = true;
  await t.watch.ensure();
  assert.equal(first.closed, true, "the old watch is closed");
  assert.equal(t.watches.length, 2);
  assert.deepEqual(t.log.matching(/./), ["/etc/config was removed or replaced; watching it anew"]);
  await t.watch.ensure();
  assert.equal(t.watches.length, 2, "the new watch is fresh");
  await emitAt(t, [50]);
  await t.clock.advance(150);
  assert.deepEqual(t.settledAt, [200], "events of the new watch settle");
});

Deno.test("config watch: a directory that cannot be watched is warned about once and retried each time", async () => {
  const t = setUp({ failStarts: 3 });
  for (let i = 0; i < 3; i++) await t.watch.ensure();
  assert.equal(t.watches.length, 0);
  assert.equal(
    t.log.count(/^cannot watch \/etc\/config; changes apply at the next resync/, "warn"),
    1,
  );
  assert.match(String(t.log.lines[0].properties.error), /No such file or directory/);
  await t.watch.ensure();
  assert.equal(t.watches.length, 1);
  assert.deepEqual(t.log.matching(/./, "info"), ["watching /etc/config for changes again"]);
  await t.watch.ensure();
  assert.equal(t.log.lines.length, 2, "nothing more to say");
});

Deno.test("config watch: close() stops the watch and drops a burst in progress", async () => {
  const t = setUp();
  await t.watch.ensure();
  const handle = t.current();
  await emitAt(t, [0]);
  t.watch.close();
  assert.equal(handle.closed, true);
  assert.deepEqual(t.clock.pending(), []);
  handle.emit(); // an event the watcher had queued before it closed
  await t.clock.advance(10_000);
  assert.deepEqual(t.settledAt, []);
  await t.watch.ensure();
  assert.equal(t.watches.length, 1, "a closed watch stays closed");
});
