/**
 * The reconcile loop end to end without root and in virtual time: the real
 * `Agent`, the real config directory reader and watch on a kubelet-style
 * ConfigMap volume in a temp dir, the faithful fake nat table, and a
 * `FakeClock`. Virtual time moves only when a test moves it, so every delay
 * (debounce, backoff, resync, the GC interval) is asserted to the millisecond
 * and no test sleeps. The resync interval is an hour unless a test says
 * otherwise, so only the watch, `requestReconcile()` (what SIGHUP calls) or a
 * retry can make anything happen.
 *
 * Real time appears only where the host is real: inotify events and file
 * reads finish when they finish, so the harness polls for them (with a
 * generous deadline that only turns a hang into a failure), and "the loop is
 * parked" (waiting on the clock for its next resync or retry) is the proof
 * that a reconcile has finished and nothing else is about to happen.
 */

import assert from "node:assert/strict";
import { Agent, type AgentTiming } from "../../lib/agent/agent.ts";
import { readConfigDir, watchConfigDir } from "../../lib/config/directory.ts";
import { type AgentFlags, defaultFlags } from "../../lib/settings/flags.ts";
import type { NatTableClient } from "../../lib/iptables/client.ts";
import { iptablesDataplane } from "../../lib/iptables/dataplane.ts";
import { ConfigMapDir } from "../../lab/config_map.ts";
import { FakeNatTable } from "../support/fake_iptables.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { CaptureLog } from "../support/capture_log.ts";
import { eventually } from "../../lab/wait.ts";
import {
  upstreamChain,
  upstreamJumpLine,
  upstreamMasqueradeLine,
  upstreamReturnLine,
} from "../support/upstream_rules.ts";

// --- the upstream rule text (tests/support/upstream_rules.ts: literal, so the loop is checked
// against the contract, not against lib/)

const chainName = upstreamChain;
const returnRule = (cidr: string) => upstreamReturnLine(cidr);
const masqueradeRule = upstreamMasqueradeLine();
const jumpRule = upstreamJumpLine();
const kubeJump =
  `-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING`;
const kubeRule = "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN";

/** Another tool's rules, there before the agent starts; they must survive byte for byte. */
const foreignSeed = nat(":KUBE-POSTROUTING - [0:0]", kubeJump, kubeRule);

function nat(...lines: string[]): string {
  return ["*nat", ...lines, "COMMIT", ""].join("\n");
}

/** Our chain for an ipv4 config with these CIDRs (link-local first, as masqLinkLocal is false). */
function chainFor(...cidrs: string[]): string[] {
  return [returnRule("169.254.0.0/16"), ...cidrs.map(returnRule), masqueradeRule];
}

function config(...cidrs: string[]): string {
  return cidrs.length === 0
    ? "nonMasqueradeCIDRs: []\n"
    : `nonMasqueradeCIDRs:\n${cidrs.map((cidr) => `  - ${cidr}\n`).join("")}`;
}

/** Misaligned: rejected with the file and line. */
const badConfig = "nonMasqueradeCIDRs:\n  - 10.0.0.1/8\n";
const otherBadConfig = "nonMasqueradeCIRDs:\n  - 10.0.0.0/8\n";

// --- waiting for the host (real time), never for the clock

/** Polls every 5 ms; the deadline only turns a hang into a failure that says what was awaited. */
async function waitFor(what: string, predicate: () => boolean | Promise<boolean>): Promise<void> {
  await eventually(what, predicate, 10_000, 5);
}

/** Resolves with `promise`, or fails when it does not settle without any virtual time passing. */
async function promptly<T>(what: string, promise: Promise<T>): Promise<T> {
  let settled = false;
  const result = promise.finally(() => settled = true);
  await waitFor(what, () => settled);
  return await result;
}

// --- the harness

const timing: AgentTiming = { quietMs: 50, initialBackoffMs: 20, maxBackoffMs: 100 };
const hourMs = 3_600_000;

interface StartOptions {
  /** The initial ConfigMap; `null` means no config directory at all. */
  readonly files?: Record<string, string> | null;
  readonly flags?: Partial<AgentFlags>;
  readonly timing?: Partial<AgentTiming>;
  readonly seed?: string;
  /** False: no watch, so only requestReconcile() and the resync trigger anything. */
  readonly watch?: boolean;
  /** Leave failures queued on the fake before the agent starts. */
  readonly before?: (fake: FakeNatTable) => void;
  /** Stands in for V8's gc (main.ts passes it under --expose-gc). */
  readonly collectGarbage?: () => void;
  /** Given: each load resolves the config's settings against it, as main.ts has the agent do. */
  readonly given?: ReadonlySet<keyof AgentFlags>;
}

class Running implements AsyncDisposable {
  readonly controller = new AbortController();
  readonly log = new CaptureLog();
  readonly clock = new FakeClock();
  readonly startedAt = this.clock.now();
  readonly fake: FakeNatTable;
  readonly fake6: FakeNatTable;
  readonly agent: Agent;
  readonly done: Promise<number>;
  /** Relevant watch events seen (each one restarts the debounce). */
  events = 0;
  exitCode?: number;
  /** Virtual instant (from the start) of every reconcile: each reads the config directory once. */
  readonly reconcilesAt: number[] = [];
  /** Virtual instant of every restore call, failed ones included. */
  readonly restoresAt: number[] = [];
  /** The delays the config reader asked for when an entry vanished under it. */
  readonly readRetries: number[] = [];
  /** While true, every call into the nat table clients waits (a slow iptables). */
  #holding = false;
  #held: (() => void)[] = [];

  constructor(
    /** A temp directory holding the config directory, removed on dispose. */
    readonly root: string,
    readonly volume: ConfigMapDir,
    options: StartOptions,
  ) {
    this.fake = new FakeNatTable({ family: "ipv4", seed: options.seed ?? foreignSeed });
    this.fake6 = new FakeNatTable({ family: "ipv6", seed: options.seed ?? foreignSeed });
    options.before?.(this.fake);
    const flags: AgentFlags = {
      ...defaultFlags,
      configDir: volume.path,
      resyncIntervalMs: hourMs,
      ...options.flags,
    };
    this.agent = new Agent({
      flags,
      commandLine: options.given ? { flags, given: options.given } : undefined,
      log: this.log,
      clock: this.clock,
      readConfigDir: (dir) => {
        this.reconcilesAt.push(this.elapsed());
        return readConfigDir(dir, {
          // A timer, not a sleep, so that the clock's pending sleeps are the loop's alone.
          sleep: (ms) => {
            this.readRetries.push(ms);
            return new Promise((resolve) => this.clock.setTimer(ms, resolve));
          },
        });
      },
      dataplane: iptablesDataplane(
        { ipv4: this.#observed(this.fake), ipv6: this.#observed(this.fake6) },
        chainName,
      ),
      randomFullySupported: { ipv4: true, ipv6: true },
      watch: options.watch === false ? undefined : (dir, onChange) =>
        watchConfigDir(dir, () => {
          this.events++;
          onChange();
        }),
      timing: { ...timing, ...options.timing },
      collectGarbage: options.collectGarbage,
    });
    this.done = this.agent.run(this.controller.signal);
    this.done.then((code) => this.exitCode = code);
  }

  /** Virtual milliseconds since the agent started. */
  elapsed(): number {
    return this.clock.now() - this.startedAt;
  }

  chain(): string[] {
    return this.fake.rules(chainName);
  }

  /** The fake, with each call's virtual instant noted and held while `hold()` is in effect. */
  #observed(fake: FakeNatTable): NatTableClient {
    return new Proxy(fake, {
      get: (target, property) => {
        const value = Reflect.get(target, property, target);
        if (typeof value !== "function") return value;
        return async (...args: unknown[]) => {
          if (property === "restore") this.restoresAt.push(this.elapsed());
          if (this.#holding) {
            const signal = args.find((arg) => arg instanceof AbortSignal);
            await new Promise<void>((resolve) => {
              this.#held.push(resolve);
              signal?.addEventListener("abort", () => resolve());
            });
          }
          return await value.apply(target, args);
        };
      },
    });
  }

  /** From now on, calls into iptables block until `release()` (or the agent's abort). */
  hold(): void {
    this.#holding = true;
  }

  /** How many calls are blocked by `hold()`. */
  get heldCalls(): number {
    return this.#held.length;
  }

  release(): void {
    this.#holding = false;
    for (const resolve of this.#held.splice(0)) resolve();
  }

  /** The delays of the loop's pending waits: its next resync or retry, when parked. */
  loopWaits(): number[] {
    return this.clock.pending().filter((wait) => wait.kind === "sleep").map((wait) => wait.ms);
  }

  /**
   * Resolves once the loop waits on the clock for its next resync or retry (so the reconcile
   * before it has finished, logging included), or has exited.
   */
  async parked(): Promise<void> {
    await waitFor(
      "the loop to wait for its next resync or retry",
      () => this.exitCode !== undefined || this.loopWaits().length > 0,
    );
  }

  /** What SIGHUP does, waiting until that reconcile is over. */
  async reconcile(): Promise<void> {
    this.agent.requestReconcile();
    await this.parked();
  }

  /** Moves virtual time to the loop's next wake-up (a resync or a retry) and lets it run. */
  async wake(): Promise<void> {
    const [next] = this.clock.pending().filter((wait) => wait.kind === "sleep");
    if (next === undefined) assert.fail(`the loop is not waiting:\n${this.log.text()}`);
    await this.clock.advance(next.dueAt - this.clock.now());
    await this.parked();
  }

  /**
   * Wakes the loop (resync or retry) until `predicate` holds. The bound turns a regression
   * that never gets there (a wrong chain, a loop that never exits) into a failure naming what
   * was awaited, instead of a suite that spins forever in virtual time.
   */
  async wakeUntil(what: string, predicate: () => boolean, maxWakes = 200): Promise<void> {
    await this.parked();
    for (let wakes = 0; !predicate(); wakes++) {
      if (wakes === maxWakes) {
        assert.fail(
          `${what}: not reached after ${maxWakes} wake-ups (${this.elapsed()} virtual ms)\n` +
            `chain: ${JSON.stringify(this.chain())}\n${this.log.text()}`,
        );
      }
      await this.wake();
    }
  }

  /** Wakes the loop until it exits; the exit code. */
  async runToExit(): Promise<number> {
    await this.wakeUntil("the loop to exit", () => this.exitCode !== undefined);
    return this.exitCode!;
  }

  /**
   * Lets watch events arrive (real time) and their debounce fire (virtual time) until
   * `predicate` holds, then until the loop is parked. It moves time only to fire the debounce,
   * never to the loop's own resync or retry: what happens here, the watch did.
   */
  async settle(what: string, predicate: () => boolean): Promise<void> {
    await waitFor(what, async () => {
      if (predicate()) return true;
      if (this.clock.pending()[0]?.kind === "timer") await this.clock.runNext();
      return predicate();
    });
    await this.parked();
  }

  /** Fires whatever debounce is still armed (late events of an earlier change), then parks. */
  async drainDebounce(): Promise<void> {
    for (let fired = 0; this.clock.pending()[0]?.kind === "timer"; fired++) {
      if (fired === 100) assert.fail("the debounce still re-arms after 100 firings");
      await this.clock.runNext();
      await this.parked();
    }
  }

  async stop(): Promise<number> {
    this.controller.abort();
    return await this.done;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.release();
    await this.stop();
    await Deno.remove(this.root, { recursive: true });
  }
}

async function start(options: StartOptions = {}): Promise<Running> {
  const files = options.files === undefined
    ? { "ip-masq-agent": config("10.0.0.0/8") }
    : options.files;
  const root = await Deno.makeTempDir({ prefix: "ip-masq-agent-test-" });
  const volume = new ConfigMapDir(`${root}/config`);
  if (files !== null) await volume.update(files);
  return new Running(root, volume, options);
}

/** Started and applied: the chain and jump are there, written by one restore, and parked. */
async function started(options: StartOptions = {}): Promise<Running> {
  const running = await start(options);
  try {
    await running.parked();
    assert.equal(running.fake.restoreCalls, 1, running.log.text());
  } catch (error) {
    await running[Symbol.asyncDispose]();
    throw error;
  }
  return running;
}

// --- start-up and the watch path

Deno.test("start-up applies the config: our chain, one jump, foreign rules untouched", async () => {
  await using agent = await started();
  assert.deepEqual(agent.chain(), chainFor("10.0.0.0/8"));
  assert.deepEqual(agent.fake.rules("POSTROUTING"), [kubeJump, jumpRule]);
  assert.deepEqual(agent.fake.rules("KUBE-POSTROUTING"), [kubeRule]);
  assert.equal(agent.fake.reconcileReads, 1);
  assert.deepEqual(agent.reconcilesAt, [0]);
  assert.deepEqual(agent.restoresAt, [0]);
  assert.equal(agent.fake6.calls.length, 0, "ipv6 is not enabled");
  assert.equal(agent.log.count(/^rules written \(ipv4\)/), 1, agent.log.text());
  assert.equal(agent.log.count(/^effective configuration$/), 1);
  assert.deepEqual(agent.loopWaits(), [hourMs], "then it waits for the resync");
  assert.equal(agent.exitCode, undefined, "still running");
  assert.equal(await agent.stop(), 0);
});

Deno.test("an atomic ..data swap that adds a CIDR is applied without a resync", async () => {
  await using agent = await started();
  await agent.volume.update({ "ip-masq-agent": config("10.0.0.0/8", "100.64.0.0/10") });
  await agent.settle("the new CIDR", () => agent.chain().includes(returnRule("100.64.0.0/10")));
  assert.deepEqual(agent.chain(), chainFor("10.0.0.0/8", "100.64.0.0/10"));
  assert.equal(agent.fake.restoreCalls, 2);
  assert.deepEqual(agent.fake.rules("POSTROUTING"), [kubeJump, jumpRule]);
  assert.ok(agent.events > 0);
  assert.ok(agent.elapsed() < hourMs, "the watch did it, not the resync");
});

Deno.test("removing a file from the ConfigMap drops its CIDRs", async () => {
  await using agent = await started({
    files: { "ip-masq-agent": config("10.0.0.0/8"), "ip-masq-extra": config("100.64.0.0/10") },
  });
  assert.deepEqual(agent.chain(), chainFor("10.0.0.0/8", "100.64.0.0/10"));
  await agent.volume.update({ "ip-masq-agent": config("10.0.0.0/8") });
  await agent.settle("the CIDR of the removed file gone", () => agent.chain().length === 3);
  assert.deepEqual(agent.chain(), chainFor("10.0.0.0/8"));
  await Deno.lstat(`${agent.volume.path}/ip-masq-extra`).then(
    () => assert.fail("the volume helper should have removed the link"),
    (error) => assert.ok(error instanceof Deno.errors.NotFound),
  );
});

Deno.test("a reconcile that reads a removed key's link while kubelet is mid-swap does not fail", async () => {
  await using agent = await started({
    watch: false,
    files: { "ip-masq-agent": config("10.0.0.0/8"), "ip-masq-extra": config("100.64.0.0/10") },
  });
  await agent.volume.update({ "ip-masq-agent": config("10.0.0.0/8") }, {
    afterRename: async () => {
      // A resync (or SIGHUP) lands in the window: the link of the removed key dangles.
      agent.agent.requestReconcile();
      await waitFor("the reader to meet the dangling link", () => agent.readRetries.length === 1);
    },
  });
  // kubelet has removed the link now; the reader's first retry sees a consistent directory.
  assert.deepEqual(agent.readRetries, [25]);
  await agent.clock.advance(25);
  await agent.parked();
  assert.equal(agent.exitCode, undefined, agent.log.text());
  assert.deepEqual(agent.readRetries, [25], "one retry was enough");
  assert.deepEqual(agent.chain(), chainFor("10.0.0.0/8"));
  assert.equal(agent.log.count(/rejected|dangling/), 0, agent.log.text());
});

Deno.test("a new file in the ConfigMap adds its CIDRs", async () => {
  await using agent = await started();
  await agent.volume.update({
    "ip-masq-agent": config("10.0.0.0/8"),
    "ip-masq-more": config("192.168.0.0/16"),
  });
  await agent.settle("the new file's CIDR", () => agent.chain().length === 4);
  assert.deepEqual(agent.chain(), chainFor("10.0.0.0/8", "192.168.0.0/16"));
});

Deno.test("a plain in-place edit of a regular file is picked up too", async () => {
  await using agent = await started({ files: {} });
  assert.deepEqual(agent.chain(), chainFor("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"));
  await Deno.writeTextFile(`${agent.volume.path}/ip-masq-agent`, config("172.16.0.0/12"));
  await agent.settle("the edited file's CIDR", () => agent.chain().length === 3);
  assert.deepEqual(agent.chain(), chainFor("172.16.0.0/12"));
});

Deno.test("a burst of 10 swaps ends at the last content, with far fewer reconciles than events", async () => {
  await using agent = await started();
  const reconcilesBefore = agent.fake.reconcileReads;
  const eventsBefore = agent.events;
  const cidrs: string[] = ["10.0.0.0/8"];
  for (let i = 1; i <= 10; i++) {
    cidrs.push(`100.${i}.0.0/16`);
    await agent.volume.update({ "ip-masq-agent": config(...cidrs) });
  }
  // Virtual time has stood still through the swaps: they are one burst however fast they were.
  await waitFor("at least one event per swap", () => agent.events - eventsBefore >= 10);
  await agent.settle("the last swap's content", () => agent.chain().length === cidrs.length + 2);
  await agent.drainDebounce();
  assert.deepEqual(agent.chain(), chainFor(...cidrs));
  const reconciles = agent.fake.reconcileReads - reconcilesBefore;
  const events = agent.events - eventsBefore;
  assert.ok(
    reconciles >= 1 && reconciles <= 3 && reconciles * 5 <= events,
    `coalesced: ${reconciles} reconciles for ${events} events`,
  );
  assert.equal(agent.fake.restoreCalls, 2, "the burst's last content, written once");
});

Deno.test("a stream of events that never pauses still reconciles within a few debounce periods", async () => {
  await using agent = await started();
  const reconcilesBefore = agent.reconcilesAt.length;
  const streamStart = agent.clock.now();
  const cidrs: string[] = ["10.0.0.0/8"];
  // A swap every 20 virtual ms for 600 ms, each seen before time moves on: never quiet for the
  // 50 ms debounce, so only the ceiling (4 periods after the first event) can fire it.
  for (let i = 1; i <= 30; i++) {
    const seen = agent.events;
    cidrs.push(`100.${i}.0.0/16`);
    await agent.volume.update({ "ip-masq-agent": config(...cidrs) });
    await waitFor(`the events of swap ${i}`, () => agent.events > seen);
    await agent.clock.advance(20);
  }
  const debounceFired = agent.clock.fired().filter((wait) => wait.kind === "timer");
  assert.equal(
    debounceFired[0]?.dueAt - streamStart,
    4 * timing.quietMs,
    "the first firing is at the ceiling, in the middle of the stream",
  );
  // Time stands still from here: a reconcile now can only have been woken during the stream.
  await waitFor(
    "a reconcile woken while the events were still coming",
    () => agent.reconcilesAt.length > reconcilesBefore,
  );
  await agent.settle("the last swap's content", () => agent.chain().length === cidrs.length + 2);
  assert.deepEqual(agent.chain(), chainFor(...cidrs));
});

Deno.test("requestReconcile (SIGHUP) applies a change the agent was not told about", async () => {
  await using agent = await started({ watch: false });
  await agent.volume.update({ "ip-masq-agent": config("10.0.0.0/8", "100.64.0.0/10") });
  assert.deepEqual(
    agent.clock.pending().map(({ kind, ms }) => ({ kind, ms })),
    [{ kind: "sleep", ms: hourMs }],
    "no watch, a long resync: nothing is due before an hour",
  );
  assert.deepEqual(agent.chain(), chainFor("10.0.0.0/8"));
  await agent.reconcile();
  assert.deepEqual(agent.chain(), chainFor("10.0.0.0/8", "100.64.0.0/10"));
  assert.deepEqual(agent.reconcilesAt, [0, 0], "at once, with no time passing");
});

Deno.test("triggers that arrive during a reconcile become exactly one more", async () => {
  await using agent = await started({ watch: false });
  const before = agent.fake.reconcileReads;
  agent.hold();
  agent.agent.requestReconcile();
  await waitFor("a reconcile blocked in its first read", () => agent.heldCalls === 1);
  for (let i = 0; i < 5; i++) agent.agent.requestReconcile();
  agent.release();
  await agent.parked();
  assert.equal(agent.fake.reconcileReads, before + 2);
  assert.deepEqual(agent.reconcilesAt, [0, 0, 0]);
  assert.deepEqual(agent.loopWaits(), [hourMs], "and then only the resync is due");
  assert.equal(agent.fake.restoreCalls, 1);
});

Deno.test("a config directory that appears later is read and then watched", async () => {
  await using agent = await start({ files: null });
  await agent.parked();
  assert.equal(agent.fake.restoreCalls, 1, "the defaults applied");
  assert.deepEqual(agent.chain(), chainFor("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"));
  assert.equal(agent.log.count(/does not exist; using the defaults/), 1, agent.log.text());
  assert.equal(agent.log.count(/^cannot watch /, "warn"), 1);
  await agent.volume.update({ "ip-masq-agent": config("10.0.0.0/8") });
  await agent.reconcile();
  assert.deepEqual(agent.chain(), chainFor("10.0.0.0/8"), "the file's config");
  assert.equal(agent.log.count(/^watching .* for changes again$/), 1, agent.log.text());
  const eventsBefore = agent.events;
  await agent.volume.update({ "ip-masq-agent": config("10.0.0.0/8", "100.64.0.0/10") });
  await agent.settle("a swap seen by the new watch", () => agent.chain().length === 4);
  assert.ok(agent.events > eventsBefore);
});

Deno.test("a config directory removed and created again is watched anew from the next reconcile", async () => {
  await using agent = await started();
  const dir = agent.volume.path;
  await Deno.remove(dir, { recursive: true });
  await Deno.mkdir(dir);
  await Deno.writeTextFile(`${dir}/ip-masq-agent`, config("10.0.0.0/8", "100.64.0.0/10"));
  await agent.reconcile();
  assert.equal(agent.chain().length, 4, "the new directory's config");
  assert.equal(agent.log.count(/was removed or replaced; watching it anew$/), 1, agent.log.text());
  await Deno.writeTextFile(`${dir}/ip-masq-agent`, config("10.0.0.0/8", "100.65.0.0/16"));
  await agent.settle(
    "an edit applied with no resync and no SIGHUP",
    () => agent.chain().some((rule) => rule.includes("100.65.0.0/16")),
  );
  assert.ok(agent.elapsed() < hourMs);
});

// Known to fail about one run in three on Deno 2.9.6 (reported to the lead): Deno.watchFs shares
// one inotify instance per process, and a directory path watched before, then removed and made
// again, is often not watched by a new Deno.watchFs at all. The test above passes because the old
// watch's last events arm the debounce; this one spends those first, so only the new watch could
// bring the edit in.
Deno.test({
  name: "a config directory removed and created again: the new watch itself sees the next edit",
  ignore: true,
  fn: async () => {
    await using agent = await started();
    const dir = agent.volume.path;
    await Deno.remove(dir, { recursive: true });
    await Deno.mkdir(dir);
    await Deno.writeTextFile(`${dir}/ip-masq-agent`, config("10.0.0.0/8", "100.64.0.0/10"));
    await agent.reconcile();
    assert.equal(agent.log.count(/was removed or replaced; watching it anew$/), 1);
    await agent.drainDebounce();
    const eventsBefore = agent.events;
    await Deno.writeTextFile(`${dir}/ip-masq-agent`, config("10.0.0.0/8", "100.65.0.0/16"));
    await waitFor("the new watch to see the edit", () => agent.events > eventsBefore);
    await agent.settle(
      "an edit seen by the new watch, with no other trigger",
      () => agent.chain().some((rule) => rule.includes("100.65.0.0/16")),
    );
  },
});

Deno.test("a resyncInterval in the config file sets the resync from the first reconcile on", async () => {
  await using agent = await started({
    watch: false,
    files: { "ip-masq-agent": `${config("10.0.0.0/8")}resyncInterval: 1s\n` },
  });
  assert.deepEqual(agent.loopWaits(), [1000], "the very first wait is the file's interval");
  await agent.clock.advance(999);
  assert.deepEqual(agent.reconcilesAt, [0]);
  await agent.clock.advance(1);
  await agent.parked();
  assert.deepEqual(agent.reconcilesAt, [0, 1000]);
  assert.equal(agent.fake.reconcileReads, 2);
  agent.fake.external(nat(`-F ${chainName}`));
  await agent.wake();
  assert.deepEqual(agent.reconcilesAt, [0, 1000, 2000]);
  assert.equal(agent.chain().length, 3, "drift healed by the next resync");
});

// --- steady state

Deno.test("steady state: one read of the table per family per reconcile and no restore", async () => {
  await using agent = await start({
    flags: { enableIpv6: true },
    files: { "ip-masq-agent": config("10.0.0.0/8", "fd00::/8") },
  });
  await agent.parked();
  assert.equal(agent.fake.restoreCalls, 1, "ipv4 applied");
  assert.equal(agent.fake6.restoreCalls, 1, "ipv6 applied");
  assert.deepEqual(agent.fake6.rules(chainName), [
    returnRule("fe80::/10"),
    returnRule("fd00::/8"),
    masqueradeRule,
  ]);
  const tables = [agent.fake.dump(), agent.fake6.dump()];
  const logLines = agent.log.lines.length;
  for (let i = 1; i <= 5; i++) {
    await agent.reconcile();
    assert.equal(agent.fake6.reconcileReads, 1 + i);
    assert.equal(agent.fake.reconcileReads, 1 + i);
  }
  assert.equal(agent.fake.restoreCalls, 1);
  assert.equal(agent.fake6.restoreCalls, 1);
  assert.deepEqual([agent.fake.dump(), agent.fake6.dump()], tables);
  assert.equal(agent.log.lines.length, logLines, "nothing to say in steady state");
  assert.equal(await agent.stop(), 0);
  assert.equal(agent.fake.restoreCalls + agent.fake6.restoreCalls, 2);
});

Deno.test("steady state: unchanged bytes in a replaced file take the short path, any byte changed the full one", async () => {
  await using agent = await started({ watch: false });
  const logLines = agent.log.lines.length;
  // A new ..data directory with the same bytes, as kubelet writes on an unrelated key's change.
  await agent.volume.update({ "ip-masq-agent": config("10.0.0.0/8") });
  await agent.reconcile();
  assert.equal(agent.log.lines.length, logLines, "nothing to say");
  assert.equal(agent.fake.restoreCalls, 1);
  // One byte: /8 becomes /9.
  await agent.volume.update({ "ip-masq-agent": config("10.0.0.0/9") });
  await agent.reconcile();
  assert.deepEqual(agent.chain(), chainFor("10.0.0.0/9"));
  assert.equal(agent.log.count(/^effective configuration$/), 2, agent.log.text());
  assert.equal(agent.fake.restoreCalls, 2);
});

// --- drift

const driftCases: { name: string; drift: string; message: RegExp }[] = [
  {
    name: "the jump deleted",
    drift: nat(`-D ${jumpRule.slice(3)}`),
    message: /POSTROUTING has no jump to IP-MASQ-AGENT/,
  },
  { name: "the chain flushed", drift: nat(`-F ${chainName}`), message: /3 missing/ },
  {
    name: "the chain and jump deleted",
    drift: nat(`-D ${jumpRule.slice(3)}`, `-F ${chainName}`, `-X ${chainName}`),
    message: /chain IP-MASQ-AGENT does not exist.*no jump/,
  },
  {
    name: "a rule edited",
    drift: nat(`-R ${chainName} 2 ${returnRule("10.0.0.0/16").slice(3 + chainName.length + 1)}`),
    message: /1 missing: .*10\.0\.0\.0\/8.*1 unexpected: .*10\.0\.0\.0\/16/,
  },
  {
    name: "a rule inserted",
    drift: nat(`-I ${chainName} 1 -j RETURN`),
    message: /1 unexpected: IP-MASQ-AGENT -j RETURN/,
  },
  {
    name: "a second jump added",
    drift: nat(jumpRule),
    message: /duplicate jump/,
  },
];

for (const { name, drift, message } of driftCases) {
  Deno.test(`drift repaired by exactly one reconcile: ${name}`, async () => {
    await using agent = await started();
    const desired = agent.fake.dump();
    agent.fake.external(drift);
    assert.notEqual(agent.fake.dump(), desired);
    await agent.reconcile();
    assert.equal(agent.fake.restoreCalls, 2, "one write repairs it");
    assert.equal(agent.fake.dump(), desired);
    assert.equal(agent.log.count(/^drift repaired \(ipv4\): /, "warn"), 1, agent.log.text());
    const line = agent.log.lines.find((entry) => entry.message.startsWith("drift repaired"));
    assert.match(line?.message ?? "", message);
    await agent.reconcile();
    await agent.reconcile();
    assert.equal(agent.fake.restoreCalls, 2, "and then nothing more to write");
    assert.equal(agent.log.count(/^drift repaired/), 1, "logged once per event");
  });
}

Deno.test("a config change is logged as rules written, not as drift", async () => {
  await using agent = await started();
  await agent.volume.update({ "ip-masq-agent": config("10.0.0.0/8", "100.64.0.0/10") });
  await agent.settle("the change applied", () => agent.fake.restoreCalls === 2);
  assert.equal(agent.log.count(/^rules written/), 2, agent.log.text());
  assert.equal(agent.log.count(/^drift repaired/), 0);
});

// --- the config error policy

Deno.test("exit-on-config-error: a bad config at start exits 2 and touches nothing", async () => {
  await using agent = await start({ files: { "ip-masq-agent": badConfig } });
  const before = agent.fake.dump();
  assert.equal(await agent.done, 2);
  assert.equal(agent.fake.calls.length, 0, "not even read");
  assert.equal(agent.fake.dump(), before);
  assert.equal(agent.log.count(/ip-masq-agent:2.*not aligned/s, "error"), 1, agent.log.text());
  assert.equal(agent.log.count(/the live rules were left unchanged/), 1);
  assert.deepEqual(agent.clock.pending(), [], "nothing left behind on the clock");
});

Deno.test("exit-on-config-error: a bad config at runtime exits 2 and keeps the rules", async () => {
  await using agent = await started();
  const applied = agent.fake.dump();
  await agent.volume.update({ "ip-masq-agent": badConfig });
  await agent.settle("the agent to exit", () => agent.exitCode !== undefined);
  assert.equal(await agent.done, 2);
  assert.equal(agent.fake.dump(), applied);
  assert.equal(agent.fake.restoreCalls, 1);
});

Deno.test("a setting changed in the config makes the agent exit 1 to restart, rules untouched", async () => {
  // Issue 15 item 8: main.ts composed the agent from the settings at start (chain, dataplane,
  // iptables mode); a new value takes a restart, which kubelet or systemd does on exit 1.
  await using agent = await started({ given: new Set(), watch: false });
  const applied = agent.fake.dump();
  await agent.volume.update({
    "ip-masq-agent": `${config("10.0.0.0/8")}masqChain: IP-MASQ-AGENT\n`,
  });
  await agent.reconcile();
  assert.equal(agent.exitCode, undefined, "the same value as the running one changes nothing");
  await agent.volume.update({ "ip-masq-agent": `${config("10.0.0.0/8")}toPorts: 1024-65535\n` });
  agent.agent.requestReconcile();
  await agent.settle("the agent to exit", () => agent.exitCode !== undefined);
  assert.equal(await agent.done, 1);
  assert.equal(
    agent.log.count(
      /^the configuration changed toPorts, which the agent reads only at start/,
      "warn",
    ),
    1,
    agent.log.text(),
  );
  assert.equal(agent.fake.dump(), applied);
  assert.equal(agent.fake.restoreCalls, 1);
});

Deno.test("keep-last-good: a bad config keeps the rules, is logged once per content, heals drift, then a good one applies", async () => {
  // No watch: each change is picked up by a reconcile the test asks for (what SIGHUP does), so
  // no late inotify event of an earlier change can add a reconcile between the exact instants
  // asserted below. The watch's own handling of changes has its tests above.
  await using agent = await started({
    watch: false,
    flags: { exitOnConfigError: false, resyncIntervalMs: 1000 },
  });
  const applied = agent.fake.dump();
  const rejected = () => agent.log.count(/^configuration rejected; keeping the last good/, "error");

  await agent.volume.update({ "ip-masq-agent": badConfig });
  await agent.reconcile();
  assert.equal(rejected(), 1, "the rejection logged");
  const reads = agent.fake.reconcileReads;
  const rejectedAt = agent.reconcilesAt.at(-1)!;
  await agent.wake();
  await agent.wake();
  assert.equal(agent.fake.reconcileReads, reads + 2, "two periodic resyncs");
  assert.deepEqual(agent.reconcilesAt.slice(-2), [rejectedAt + 1000, rejectedAt + 2000]);
  await agent.reconcile();
  assert.equal(rejected(), 1, `logged once across resyncs:\n${agent.log.text()}`);
  assert.equal(agent.fake.dump(), applied);
  assert.equal(agent.fake.restoreCalls, 1);
  assert.equal(agent.exitCode, undefined);

  await agent.volume.update({ "ip-masq-agent": otherBadConfig });
  await agent.reconcile();
  assert.equal(rejected(), 2, "a different bad content logged");
  const errors = agent.log.lines.filter((line) => line.level === "error");
  assert.match(String(errors[0].properties.error), /ip-masq-agent:2.*not aligned/s);
  assert.match(String(errors[1].properties.error), /nonMasqueradeCIRDs/);

  agent.fake.external(nat(`-D ${jumpRule.slice(3)}`));
  await agent.reconcile();
  assert.equal(agent.fake.dump(), applied, "drift healed with the last good config");
  assert.equal(agent.log.count(/^drift repaired/), 1);
  assert.equal(rejected(), 2);

  await agent.volume.update({ "ip-masq-agent": config("10.0.0.0/8", "100.64.0.0/10") });
  await agent.reconcile();
  assert.equal(agent.chain().length, 4, "the valid config applied");
  assert.deepEqual(agent.chain(), chainFor("10.0.0.0/8", "100.64.0.0/10"));
  assert.equal(agent.log.count(/^the configuration is valid again$/), 1, agent.log.text());
  assert.equal(await agent.stop(), 0);
});

Deno.test("keep-last-good: going back to the last good bytes after a rejection is valid again", async () => {
  await using agent = await started({ watch: false, flags: { exitOnConfigError: false } });
  const applied = agent.fake.dump();
  await agent.volume.update({ "ip-masq-agent": badConfig });
  await agent.reconcile();
  assert.equal(agent.log.count(/^configuration rejected; keeping the last good/, "error"), 1);
  await agent.volume.update({ "ip-masq-agent": config("10.0.0.0/8") });
  await agent.reconcile();
  assert.equal(agent.log.count(/^the configuration is valid again$/), 1, agent.log.text());
  assert.equal(agent.log.count(/^effective configuration$/), 1, "the same configuration as before");
  agent.fake.external(nat(`-F ${chainName}`));
  await agent.reconcile();
  assert.equal(agent.fake.dump(), applied, "and it is what drift is repaired to");
  assert.equal(agent.fake.restoreCalls, 2);
});

Deno.test("keep-last-good: a bad config from the start applies nothing until it is fixed", async () => {
  await using agent = await start({
    files: { "ip-masq-agent": badConfig },
    flags: { exitOnConfigError: false },
  });
  const before = agent.fake.dump();
  const rejected = () =>
    agent.log.count(/^configuration rejected; no rules are applied until/, "error");
  await agent.parked();
  assert.equal(rejected(), 1, "the rejection logged");
  for (let i = 0; i < 3; i++) await agent.reconcile();
  assert.equal(agent.reconcilesAt.length, 4);
  assert.equal(rejected(), 1, agent.log.text());
  assert.equal(agent.fake.calls.length, 0, "nothing to apply, so nothing read or written");
  assert.equal(agent.fake.dump(), before);
  assert.equal(agent.exitCode, undefined);

  await agent.volume.update({ "ip-masq-agent": config("10.0.0.0/8") });
  await agent.settle("the fixed config applied", () => agent.fake.restoreCalls === 1);
  assert.deepEqual(agent.chain(), chainFor("10.0.0.0/8"));
  assert.deepEqual(agent.fake.rules("POSTROUTING"), [kubeJump, jumpRule]);
});

// --- iptables failures

Deno.test("a failing iptables-restore is retried with backoff, then exits 1 after one resync interval", async () => {
  await using agent = await start({
    flags: { resyncIntervalMs: 1000 },
    before: (fake) => fake.failNextRestores(1000, "failed"),
  });
  const before = agent.fake.dump();
  assert.equal(await agent.runToExit(), 1);
  // 20 ms doubling to the 100 ms cap; the last retry is clipped to land on the budget's end.
  const delays = [20, 40, 80, 100, 100, 100, 100, 100, 100, 100, 100, 60];
  const attempts = delays.reduce((at, delay) => [...at, at.at(-1)! + delay], [0]);
  assert.deepEqual(agent.restoresAt, attempts);
  assert.equal(
    agent.elapsed(),
    1000,
    "gave up exactly one resync interval after the first failure",
  );
  assert.equal(agent.fake.dump(), before, "the rules stay untouched");
  assert.deepEqual(
    agent.log.matching(/^applying rules failed; retrying in \d+ ms$/, "warn"),
    delays.map((delay) => `applying rules failed; retrying in ${delay} ms`),
  );
  assert.equal(agent.log.count(/^giving up: iptables kept failing/, "error"), 1, agent.log.text());
  assert.deepEqual(agent.clock.pending(), [], "nothing left behind on the clock");
});

Deno.test("a restore that fails a few times and then works keeps the agent running", async () => {
  await using agent = await start({
    flags: { resyncIntervalMs: 1000 },
    before: (fake) => fake.failNextRestores(3, "failed"),
  });
  for (let i = 0; i < 3; i++) {
    await agent.parked();
    await agent.wake();
  }
  assert.equal(agent.chain().length, 3, "applied after the retries");
  assert.deepEqual(agent.restoresAt, [0, 20, 60, 140]);
  assert.equal(agent.fake.restoreCalls, 4);
  assert.deepEqual(agent.loopWaits(), [1000], "back to the resync interval");
  await agent.wake();
  assert.equal(agent.exitCode, undefined);
  assert.equal(agent.fake.restoreCalls, 4, "the next resync finds nothing to write");
  assert.equal(agent.log.count(/^applying rules failed/), 3);
});

Deno.test("a held xtables lock never makes the agent exit; it applies once the lock is released", async () => {
  await using agent = await start({
    flags: { resyncIntervalMs: 1000 },
    before: (fake) => fake.failNextRestores(1_000_000, "lock"),
  });
  const before = agent.fake.dump();
  await agent.wakeUntil("1800 virtual ms of lock failures", () => agent.elapsed() > 1800);
  // Well past one resync interval of lock failures, still running, at the capped backoff.
  const delays = [20, 40, 80, ...Array(18).fill(100)];
  const attempts = delays.reduce((at, delay) => [...at, at.at(-1)! + delay], [0]).slice(0, -1);
  assert.deepEqual(agent.restoresAt, attempts);
  assert.equal(agent.elapsed(), 1840);
  assert.equal(agent.exitCode, undefined, "still running");
  assert.equal(agent.fake.dump(), before);
  assert.deepEqual(
    agent.log.matching(/xtables lock is held by another program/, "warn"),
    delays.map((delay) => `the xtables lock is held by another program; retrying in ${delay} ms`),
  );

  agent.fake.clearFailures();
  await agent.wake();
  assert.equal(agent.chain().length, 3, "applied once the lock is free");
  assert.deepEqual(agent.restoresAt.at(-1), 1940);
  assert.deepEqual(agent.fake.rules("POSTROUTING"), [kubeJump, jumpRule]);
  assert.equal(agent.exitCode, undefined);
  assert.equal(await agent.stop(), 0);
});

Deno.test("a generic failure after lock failures still gets a full retry budget", async () => {
  await using agent = await start({
    flags: { resyncIntervalMs: 1000 },
    before: (fake) => {
      fake.failNextRestores(15, "lock");
      fake.failNextRestores(3, "failed");
    },
  });
  await agent.wakeUntil("the chain applied", () => agent.chain().length === 3);
  // 15 lock failures (0 to 1240 ms) spend no budget; the generic ones start it at 1340.
  const lockAt = [0, 20, 60, 140, ...Array.from({ length: 11 }, (_, i) => 240 + 100 * i)];
  assert.deepEqual(agent.restoresAt, [...lockAt, 1340, 1440, 1540, 1640]);
  assert.equal(agent.fake.restoreCalls, 19);
  assert.equal(agent.exitCode, undefined);
});

// --- shutdown

Deno.test("abort ends run() with 0 promptly while idle", async () => {
  await using agent = await started();
  const now = agent.clock.now();
  assert.equal(await promptly("run() to end", agent.stop()), 0);
  assert.equal(agent.clock.now(), now, "without waiting for any timer");
  assert.deepEqual(agent.clock.pending(), [], "and nothing left behind on the clock");
});

Deno.test("abort ends run() with 0 promptly during a backoff", async () => {
  await using agent = await start({
    timing: { initialBackoffMs: 60_000, maxBackoffMs: 60_000 },
    before: (fake) => fake.failNextRestores(1, "failed"),
  });
  await agent.parked();
  assert.equal(agent.log.count(/^applying rules failed/), 1, "in backoff");
  assert.deepEqual(agent.loopWaits(), [60_000]);
  const now = agent.clock.now();
  assert.equal(await promptly("run() to end", agent.stop()), 0);
  assert.equal(agent.clock.now(), now);
  assert.deepEqual(agent.clock.pending(), []);
});

Deno.test("abort ends run() with 0 promptly during a slow restore, leaving the table alone", async () => {
  await using agent = await started();
  const applied = agent.fake.dump();
  agent.fake.external(nat(`-F ${chainName}`));
  const drifted = agent.fake.dump();
  agent.hold();
  agent.agent.requestReconcile();
  await waitFor("a reconcile blocked in its first read", () => agent.heldCalls === 1);
  assert.equal(await promptly("run() to end", agent.stop()), 0);
  assert.equal(agent.fake.dump(), drifted);
  assert.notEqual(drifted, applied);
  assert.equal(agent.fake.restoreCalls, 1, "the repair was never written");
});

Deno.test("a full garbage collection follows every 10th reconcile, at most once a second", async () => {
  let collections = 0;
  await using agent = await started({ watch: false, collectGarbage: () => collections++ });
  // The start-up reconcile was the first; nine more make ten.
  for (let i = 0; i < 8; i++) await agent.reconcile();
  assert.equal(collections, 0, "not after the 9th");
  await agent.reconcile();
  assert.equal(collections, 1, "after the 10th");
  for (let i = 0; i < 15; i++) await agent.reconcile();
  assert.equal(collections, 1, "a burst of reconciles within a second gets no second collection");
  await agent.clock.advance(999);
  await agent.reconcile();
  assert.equal(collections, 1, "999 ms are not a second");
  await agent.clock.advance(1);
  await agent.reconcile();
  assert.equal(collections, 2, "a collection once a second has passed");
});

Deno.test("issue 15: at --v=0 the effective configuration is a summary, every CIDR only at --v=2", async () => {
  const cidrs = Array.from({ length: 10_000 }, (_, i) => `10.${i >> 8}.${i & 255}.0/24`);
  const text = `cidrLimit: 10000\nnonMasqueradeCIDRs:\n${cidrs.map((c) => `  - ${c}\n`).join("")}`;
  await using agent = await started({ files: { "ip-masq-agent": text }, watch: false });
  const summary = agent.log.lines.find((line) => line.message === "effective configuration");
  assert.ok(summary, agent.log.text().slice(0, 2000));
  assert.equal(summary.level, "info");
  const config = String(summary.properties.config);
  assert.ok(config.length < 1024, `${config.length} bytes`);
  assert.match(config, /"10\.0\.0\.0\/24",.*"\.\.\. 9992 more \(10000 in all; --v=2 lists them\)"/);
  // --v=2: one debug line per CIDR, with where it came from.
  assert.equal(agent.log.count(/^ {2}RETURN 10\./, "debug"), 10_000);
  assert.equal(await agent.stop(), 0);
});
