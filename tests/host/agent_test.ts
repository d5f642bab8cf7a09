/**
 * The reconcile loop end to end without root: the real `Agent`, the real
 * config directory reader and watch on a kubelet-style ConfigMap volume in a
 * temp dir, and the faithful fake nat table. The resync interval is an hour
 * unless a test says otherwise, so only the watch, `requestReconcile()` (what
 * SIGHUP calls) or a retry can make anything happen.
 */

import assert from "node:assert/strict";
import { Agent, type AgentTiming } from "../../lib/host/agent.ts";
import { readConfigDir, watchConfigDir } from "../../lib/host/config_dir.ts";
import { type AgentFlags, defaultFlags } from "../../lib/core/flags.ts";
import type { Logger } from "../../lib/host/log.ts";
import { ConfigMapDir } from "../../lab/config_map.ts";
import { FakeNatTable } from "../support/fake_iptables.ts";
import { eventually, sleep as tick } from "../../lab/wait.ts";

// --- the rules as DESIGN.md spells them (literal, so the loop is checked against the contract)

const chainName = "IP-MASQ-AGENT";
const returnRule = (cidr: string) =>
  `-A ${chainName} -d ${cidr} -m comment --comment ` +
  `"ip-masq-agent: local traffic is not subject to MASQUERADE" -j RETURN`;
const masqueradeRule = `-A ${chainName} -m comment --comment ` +
  `"ip-masq-agent: outbound traffic is subject to MASQUERADE (must be last in chain)" ` +
  `-j MASQUERADE --random-fully`;
const jumpRule = `-A POSTROUTING -m comment --comment "ip-masq-agent: ensure nat POSTROUTING ` +
  `directs all non-LOCAL destination traffic to our custom ${chainName} chain" ` +
  `-m addrtype ! --dst-type LOCAL -j ${chainName}`;
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

// --- a capture logger

interface LogLine {
  readonly level: "info" | "warn" | "error" | "debug";
  readonly message: string;
  readonly properties: Record<string, unknown>;
}

class CaptureLog implements Logger {
  readonly lines: LogLine[] = [];
  info = (message: string, properties = {}) => this.#add("info", message, properties);
  warn = (message: string, properties = {}) => this.#add("warn", message, properties);
  error = (message: string, properties = {}) => this.#add("error", message, properties);
  debug = (message: string, properties = {}) => this.#add("debug", message, properties);

  #add(level: LogLine["level"], message: string, properties: Record<string, unknown>) {
    this.lines.push({ level, message, properties });
  }

  count(pattern: RegExp, level?: LogLine["level"]): number {
    return this.lines.filter((line) =>
      (level === undefined || line.level === level) && pattern.test(line.message)
    ).length;
  }

  /** For assertion messages. */
  text(): string {
    return this.lines.map((line) =>
      `${line.level}: ${line.message} ${JSON.stringify(line.properties)}`
    ).join("\n");
  }
}

// --- waiting without fixed sleeps

/** Polls every 5 ms, then lets the microtasks the loop runs after the awaited call finish. */
async function waitFor(what: string, predicate: () => boolean, timeoutMs = 5000): Promise<void> {
  await eventually(what, predicate, timeoutMs, 5);
  await tick();
}

/** Proving that something does NOT happen needs a quiet period: several debounce intervals. */
const quietMs = 250;

// --- the harness

const timing: AgentTiming = { debounceMs: 50, initialBackoffMs: 20, maxBackoffMs: 100 };

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
}

class Running implements AsyncDisposable {
  readonly controller = new AbortController();
  readonly log = new CaptureLog();
  readonly fake: FakeNatTable;
  readonly fake6: FakeNatTable;
  readonly agent: Agent;
  readonly done: Promise<number>;
  /** Relevant watch events seen (each one restarts the debounce). */
  events = 0;
  exitCode?: number;

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
      resyncInterval: 3600,
      ...options.flags,
    };
    this.agent = new Agent({
      flags,
      log: this.log,
      readConfigDir,
      clients: { ipv4: this.fake, ipv6: this.fake6 },
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

  chain(): string[] {
    return this.fake.rules(chainName);
  }

  /** What SIGHUP does, waiting until that reconcile has read the table. */
  async reconcile(): Promise<void> {
    const before = this.fake.saveCalls;
    this.agent.requestReconcile();
    await waitFor("a reconcile after requestReconcile()", () => this.fake.saveCalls > before);
  }

  async stop(): Promise<number> {
    this.controller.abort();
    return await this.done;
  }

  async [Symbol.asyncDispose](): Promise<void> {
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

/** Started and applied: the chain and jump are there, written by one restore. */
async function started(options: StartOptions = {}): Promise<Running> {
  const running = await start(options);
  try {
    await waitFor("the start-up reconcile", () => running.fake.restoreCalls === 1);
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
  assert.equal(agent.fake.saveCalls, 1);
  assert.equal(agent.fake6.calls.length, 0, "ipv6 is not enabled");
  assert.equal(agent.log.count(/^rules written \(ipv4\)/), 1, agent.log.text());
  assert.equal(agent.log.count(/^effective configuration$/), 1);
  assert.equal(agent.exitCode, undefined, "still running");
  assert.equal(await agent.stop(), 0);
});

Deno.test("an atomic ..data swap that adds a CIDR is applied without a resync", async () => {
  await using agent = await started();
  await agent.volume.update({ "ip-masq-agent": config("10.0.0.0/8", "100.64.0.0/10") });
  await waitFor("the new CIDR", () => agent.chain().includes(returnRule("100.64.0.0/10")));
  assert.deepEqual(agent.chain(), chainFor("10.0.0.0/8", "100.64.0.0/10"));
  assert.equal(agent.fake.restoreCalls, 2);
  assert.deepEqual(agent.fake.rules("POSTROUTING"), [kubeJump, jumpRule]);
  assert.ok(agent.events > 0);
});

Deno.test("removing a file from the ConfigMap drops its CIDRs", async () => {
  await using agent = await started({
    files: { "ip-masq-agent": config("10.0.0.0/8"), "ip-masq-extra": config("100.64.0.0/10") },
  });
  assert.deepEqual(agent.chain(), chainFor("10.0.0.0/8", "100.64.0.0/10"));
  await agent.volume.update({ "ip-masq-agent": config("10.0.0.0/8") });
  await waitFor("the CIDR of the removed file gone", () => agent.chain().length === 3);
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
      // A resync (or SIGHUP) lands in the window; kubelet removes the link a moment later.
      agent.agent.requestReconcile();
      await tick(10);
    },
  });
  await waitFor(
    "the removed key's CIDR gone",
    () => agent.chain().length === 3 || !!agent.exitCode,
  );
  assert.equal(agent.exitCode, undefined, agent.log.text());
  assert.deepEqual(agent.chain(), chainFor("10.0.0.0/8"));
});

Deno.test("a new file in the ConfigMap adds its CIDRs", async () => {
  await using agent = await started();
  await agent.volume.update({
    "ip-masq-agent": config("10.0.0.0/8"),
    "ip-masq-more": config("192.168.0.0/16"),
  });
  await waitFor("the new file's CIDR", () => agent.chain().length === 4);
  assert.deepEqual(agent.chain(), chainFor("10.0.0.0/8", "192.168.0.0/16"));
});

Deno.test("a plain in-place edit of a regular file is picked up too", async () => {
  await using agent = await started({ files: {} });
  assert.deepEqual(agent.chain(), chainFor("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"));
  await Deno.writeTextFile(`${agent.volume.path}/ip-masq-agent`, config("172.16.0.0/12"));
  await waitFor("the edited file's CIDR", () => agent.chain().length === 3);
  assert.deepEqual(agent.chain(), chainFor("172.16.0.0/12"));
});

Deno.test("a burst of 10 swaps ends at the last content, with far fewer reconciles than events", async () => {
  await using agent = await started();
  const savesBefore = agent.fake.saveCalls;
  const eventsBefore = agent.events;
  const cidrs: string[] = ["10.0.0.0/8"];
  for (let i = 1; i <= 10; i++) {
    cidrs.push(`100.${i}.0.0/16`);
    await agent.volume.update({ "ip-masq-agent": config(...cidrs) });
  }
  await waitFor("the last swap's content", () => agent.chain().length === cidrs.length + 2);
  await tick(quietMs);
  assert.deepEqual(agent.chain(), chainFor(...cidrs));
  const reconciles = agent.fake.saveCalls - savesBefore;
  const events = agent.events - eventsBefore;
  assert.ok(events >= 10, `at least one event per swap, saw ${events}`);
  assert.ok(
    reconciles <= 3 && reconciles * 5 <= events,
    `coalesced: ${reconciles} reconciles for ${events} events`,
  );
  assert.equal(agent.fake.restoreCalls - 1, reconciles, "every reconcile of the burst wrote");
});

Deno.test("a stream of events that never pauses still reconciles within a few debounce periods", async () => {
  await using agent = await started();
  const savesBefore = agent.fake.saveCalls;
  const cidrs: string[] = ["10.0.0.0/8"];
  // Swaps every 20 ms for 600 ms: never quiet for the 50 ms debounce.
  const streamEnds = Date.now() + 600;
  let i = 0;
  while (Date.now() < streamEnds) {
    cidrs.push(`100.${++i}.0.0/16`);
    await agent.volume.update({ "ip-masq-agent": config(...cidrs) });
    await tick(20);
  }
  assert.ok(
    agent.fake.saveCalls > savesBefore,
    "a reconcile happened while the events were still coming",
  );
  await waitFor("the last swap's content", () => agent.chain().length === cidrs.length + 2);
});

Deno.test("requestReconcile (SIGHUP) applies a change the agent was not told about", async () => {
  await using agent = await started({ watch: false });
  await agent.volume.update({ "ip-masq-agent": config("10.0.0.0/8", "100.64.0.0/10") });
  await tick(quietMs);
  assert.deepEqual(agent.chain(), chainFor("10.0.0.0/8"), "no watch, a long resync: nothing yet");
  await agent.reconcile();
  assert.deepEqual(agent.chain(), chainFor("10.0.0.0/8", "100.64.0.0/10"));
});

Deno.test("triggers that arrive during a reconcile become exactly one more", async () => {
  await using agent = await started({ watch: false });
  agent.fake.latencyMs = 100;
  const before = agent.fake.saveCalls;
  agent.agent.requestReconcile();
  await waitFor("a reconcile in flight", () => agent.fake.saveCalls === before + 1);
  for (let i = 0; i < 5; i++) agent.agent.requestReconcile();
  await waitFor("one more reconcile", () => agent.fake.saveCalls === before + 2);
  await tick(agent.fake.latencyMs + quietMs);
  assert.equal(agent.fake.saveCalls, before + 2);
  assert.equal(agent.fake.restoreCalls, 1);
});

Deno.test("a config directory that appears later is read and then watched", async () => {
  await using agent = await start({ files: null });
  await waitFor("the defaults applied", () => agent.fake.restoreCalls === 1);
  assert.deepEqual(agent.chain(), chainFor("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"));
  assert.equal(agent.log.count(/does not exist; using the defaults/), 1, agent.log.text());
  assert.equal(agent.log.count(/^cannot watch /, "warn"), 1);
  await agent.volume.update({ "ip-masq-agent": config("10.0.0.0/8") });
  await agent.reconcile();
  await waitFor("the file's config", () => agent.chain().length === 3);
  assert.equal(agent.log.count(/^watching .* for changes again$/), 1, agent.log.text());
  await agent.volume.update({ "ip-masq-agent": config("10.0.0.0/8", "100.64.0.0/10") });
  await waitFor("a swap seen by the new watch", () => agent.chain().length === 4);
});

Deno.test("a config directory removed and created again is watched anew from the next reconcile", async () => {
  await using agent = await started();
  const dir = agent.volume.path;
  await Deno.remove(dir, { recursive: true });
  await Deno.mkdir(dir);
  await Deno.writeTextFile(`${dir}/ip-masq-agent`, config("10.0.0.0/8", "100.64.0.0/10"));
  await agent.reconcile();
  await waitFor("the new directory's config", () => agent.chain().length === 4);
  assert.equal(agent.log.count(/was removed or replaced; watching it anew$/), 1, agent.log.text());
  await Deno.writeTextFile(`${dir}/ip-masq-agent`, config("10.0.0.0/8", "100.65.0.0/16"));
  await waitFor(
    "an edit seen by the new watch, with no other trigger",
    () => agent.chain().some((rule) => rule.includes("100.65.0.0/16")),
  );
});

Deno.test("a resyncInterval in the config file sets the resync from the first reconcile on", async () => {
  await using agent = await started({
    watch: false,
    files: { "ip-masq-agent": `${config("10.0.0.0/8")}resyncInterval: 1s\n` },
  });
  const firstSave = agent.fake.calls[0].at;
  await waitFor("a periodic resync after 1 s", () => agent.fake.saveCalls === 2, 3000);
  const interval = agent.fake.calls[agent.fake.calls.length - 1].at - firstSave;
  assert.ok(interval >= 950 && interval < 2000, `resynced after ${interval} ms`);
  agent.fake.external(nat(`-F ${chainName}`));
  await waitFor("drift healed by the next resync", () => agent.chain().length === 3, 3000);
});

// --- steady state

Deno.test("steady state: one save per family per reconcile and no restore", async () => {
  await using agent = await start({
    flags: { enableIpv6: true },
    files: { "ip-masq-agent": config("10.0.0.0/8", "fd00::/8") },
  });
  await waitFor(
    "both families applied",
    () => agent.fake.restoreCalls === 1 && agent.fake6.restoreCalls === 1,
  );
  assert.deepEqual(agent.fake6.rules(chainName), [
    returnRule("fe80::/10"),
    returnRule("fd00::/8"),
    masqueradeRule,
  ]);
  const tables = [agent.fake.dump(), agent.fake6.dump()];
  const logLines = agent.log.lines.length;
  for (let i = 1; i <= 5; i++) {
    await agent.reconcile();
    await waitFor("the ipv6 read", () => agent.fake6.saveCalls === 1 + i);
    assert.equal(agent.fake.saveCalls, 1 + i);
  }
  assert.equal(agent.fake.restoreCalls, 1);
  assert.equal(agent.fake6.restoreCalls, 1);
  assert.deepEqual([agent.fake.dump(), agent.fake6.dump()], tables);
  assert.equal(agent.log.lines.length, logLines, "nothing to say in steady state");
  assert.equal(await agent.stop(), 0);
  assert.equal(agent.fake.restoreCalls + agent.fake6.restoreCalls, 2);
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
  await waitFor("the change applied", () => agent.fake.restoreCalls === 2);
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
});

Deno.test("exit-on-config-error: a bad config at runtime exits 2 and keeps the rules", async () => {
  await using agent = await started();
  const applied = agent.fake.dump();
  await agent.volume.update({ "ip-masq-agent": badConfig });
  assert.equal(await agent.done, 2);
  assert.equal(agent.fake.dump(), applied);
  assert.equal(agent.fake.restoreCalls, 1);
});

Deno.test("keep-last-good: a bad config keeps the rules, is logged once per content, heals drift, then a good one applies", async () => {
  await using agent = await started({ flags: { exitOnConfigError: false, resyncInterval: 1 } });
  const applied = agent.fake.dump();
  const rejected = () => agent.log.count(/^configuration rejected; keeping the last good/, "error");

  await agent.volume.update({ "ip-masq-agent": badConfig });
  await waitFor("the rejection logged", () => rejected() === 1);
  const saves = agent.fake.saveCalls;
  await waitFor("two periodic resyncs", () => agent.fake.saveCalls >= saves + 2, 5000);
  await agent.reconcile();
  assert.equal(rejected(), 1, `logged once across resyncs:\n${agent.log.text()}`);
  assert.equal(agent.fake.dump(), applied);
  assert.equal(agent.fake.restoreCalls, 1);
  assert.equal(agent.exitCode, undefined);

  await agent.volume.update({ "ip-masq-agent": otherBadConfig });
  await waitFor("a different bad content logged", () => rejected() === 2);
  const errors = agent.log.lines.filter((line) => line.level === "error");
  assert.match(String(errors[0].properties.error), /ip-masq-agent:2.*not aligned/s);
  assert.match(String(errors[1].properties.error), /nonMasqueradeCIRDs/);

  agent.fake.external(nat(`-D ${jumpRule.slice(3)}`));
  await agent.reconcile();
  assert.equal(agent.fake.dump(), applied, "drift healed with the last good config");
  assert.equal(agent.log.count(/^drift repaired/), 1);
  assert.equal(rejected(), 2);

  await agent.volume.update({ "ip-masq-agent": config("10.0.0.0/8", "100.64.0.0/10") });
  await waitFor("the valid config applied", () => agent.chain().length === 4);
  assert.deepEqual(agent.chain(), chainFor("10.0.0.0/8", "100.64.0.0/10"));
  assert.equal(agent.log.count(/^the configuration is valid again$/), 1, agent.log.text());
  assert.equal(await agent.stop(), 0);
});

Deno.test("keep-last-good: a bad config from the start applies nothing until it is fixed", async () => {
  await using agent = await start({
    files: { "ip-masq-agent": badConfig },
    flags: { exitOnConfigError: false },
  });
  const before = agent.fake.dump();
  const rejected = () =>
    agent.log.count(/^configuration rejected; no rules are applied until/, "error");
  await waitFor("the rejection logged", () => rejected() === 1);
  for (let i = 0; i < 3; i++) {
    agent.agent.requestReconcile();
    await tick(20);
  }
  await tick(quietMs);
  assert.equal(rejected(), 1, agent.log.text());
  assert.equal(agent.fake.calls.length, 0, "nothing to apply, so nothing read or written");
  assert.equal(agent.fake.dump(), before);
  assert.equal(agent.exitCode, undefined);

  await agent.volume.update({ "ip-masq-agent": config("10.0.0.0/8") });
  await waitFor("the fixed config applied", () => agent.fake.restoreCalls === 1);
  assert.deepEqual(agent.chain(), chainFor("10.0.0.0/8"));
  assert.deepEqual(agent.fake.rules("POSTROUTING"), [kubeJump, jumpRule]);
});

// --- iptables failures

Deno.test("a failing iptables-restore is retried with backoff, then exits 1 after one resync interval", async () => {
  const startedAt = performance.now();
  await using agent = await start({
    flags: { resyncInterval: 1 },
    before: (fake) => fake.failNextRestores(1000, "failed"),
  });
  const before = agent.fake.dump();
  assert.equal(await agent.done, 1);
  const elapsed = performance.now() - startedAt;
  const attempts = agent.fake.calls.filter((call) => call.op === "restore").map((call) => call.at);
  const gaps = attempts.slice(1).map((at, index) => at - attempts[index]);
  assert.ok(elapsed >= 950 && elapsed < 4000, `gave up after one resync interval: ${elapsed} ms`);
  assert.ok(attempts.length >= 5 && attempts.length <= 30, `${attempts.length} attempts`);
  assert.ok(gaps[0] >= 15, `the first retry waits the initial backoff: ${gaps}`);
  assert.ok(gaps[2] > gaps[0] * 1.5, `the backoff grows: ${gaps}`);
  assert.ok(Math.max(...gaps) < 100 + 80, `the backoff is capped: ${gaps}`);
  assert.equal(agent.fake.dump(), before, "the rules stay untouched");
  assert.equal(agent.log.count(/^applying rules failed; retrying in \d+ ms$/, "warn"), gaps.length);
  assert.equal(agent.log.count(/^giving up: iptables kept failing/, "error"), 1, agent.log.text());
});

Deno.test("a restore that fails a few times and then works keeps the agent running", async () => {
  await using agent = await start({
    flags: { resyncInterval: 1 },
    before: (fake) => fake.failNextRestores(3, "failed"),
  });
  await waitFor("applied after the retries", () => agent.chain().length === 3);
  assert.equal(agent.fake.restoreCalls, 4);
  await tick(quietMs);
  assert.equal(agent.exitCode, undefined);
  assert.equal(agent.log.count(/^applying rules failed/), 3);
});

Deno.test("a held xtables lock never makes the agent exit; it applies once the lock is released", async () => {
  await using agent = await start({
    flags: { resyncInterval: 1 },
    before: (fake) => fake.failNextRestores(1_000_000, "lock"),
  });
  const before = agent.fake.dump();
  await waitFor("a first lock failure", () => agent.fake.restoreCalls >= 1);
  const firstAttempt = agent.fake.calls.find((call) => call.op === "restore")?.at ?? 0;
  await waitFor(
    "well past one resync interval of lock failures",
    () => performance.now() - firstAttempt > 1800,
  );
  assert.equal(agent.exitCode, undefined, "still running");
  assert.equal(agent.fake.dump(), before);
  assert.ok(agent.log.count(/xtables lock is held by another program/, "warn") >= 5);

  agent.fake.clearFailures();
  await waitFor("applied once the lock is free", () => agent.chain().length === 3);
  assert.deepEqual(agent.fake.rules("POSTROUTING"), [kubeJump, jumpRule]);
  assert.equal(agent.exitCode, undefined);
  assert.equal(await agent.stop(), 0);
});

Deno.test("a generic failure after lock failures still gets a full retry budget", async () => {
  await using agent = await start({
    flags: { resyncInterval: 1 },
    before: (fake) => {
      fake.failNextRestores(15, "lock");
      fake.failNextRestores(3, "failed");
    },
  });
  await waitFor("applied after lock and generic failures", () => agent.chain().length === 3);
  assert.equal(agent.fake.restoreCalls, 19);
  assert.equal(agent.exitCode, undefined);
});

// --- shutdown

Deno.test("abort ends run() with 0 promptly while idle", async () => {
  await using agent = await started();
  const startedAt = performance.now();
  assert.equal(await agent.stop(), 0);
  assert.ok(performance.now() - startedAt < 100);
});

Deno.test("abort ends run() with 0 promptly during a backoff", async () => {
  await using agent = await start({
    timing: { initialBackoffMs: 60_000, maxBackoffMs: 60_000 },
    before: (fake) => fake.failNextRestores(1, "failed"),
  });
  await waitFor("in backoff", () => agent.log.count(/^applying rules failed/) === 1);
  const startedAt = performance.now();
  assert.equal(await agent.stop(), 0);
  assert.ok(performance.now() - startedAt < 100);
});

Deno.test("abort ends run() with 0 promptly during a slow restore, leaving the table alone", async () => {
  await using agent = await started();
  const applied = agent.fake.dump();
  agent.fake.external(nat(`-F ${chainName}`));
  const drifted = agent.fake.dump();
  agent.fake.latencyMs = 60_000;
  agent.agent.requestReconcile();
  await waitFor("a reconcile blocked in iptables-save", () => agent.fake.saveCalls === 2);
  const startedAt = performance.now();
  assert.equal(await agent.stop(), 0);
  assert.ok(performance.now() - startedAt < 100);
  assert.equal(agent.fake.dump(), drifted);
  assert.notEqual(drifted, applied);
});

Deno.test("a full garbage collection follows every 10th reconcile, at most once a second", async () => {
  let collections = 0;
  await using agent = await started({ watch: false, collectGarbage: () => collections++ });
  // The start-up reconcile was the first; nine more make ten.
  for (let i = 0; i < 9; i++) await agent.reconcile();
  await waitFor("the collection after the 10th reconcile", () => collections === 1);
  for (let i = 0; i < 15; i++) await agent.reconcile();
  await tick(quietMs);
  assert.equal(collections, 1, "a burst of reconciles within a second gets no second collection");
  await tick(1000);
  await agent.reconcile();
  await waitFor("a collection once a second has passed", () => collections === 2);
});
