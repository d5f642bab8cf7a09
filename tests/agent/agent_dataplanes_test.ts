/**
 * The reconcile loop's contract, run once per dataplane: the same `Agent`
 * drives the faithful fake iptables (tests/support/fake_iptables.ts) through
 * the iptables dataplane and the fake nft (tests/support/fake_nft.ts) through
 * the nftables one, and cannot tell them apart. A representative set of
 * tests/agent/agent_test.ts (start-up, a config change, steady state, drift,
 * the config error policy, retries), plus switching dataplanes on a running
 * node. Virtual time (FakeClock); no watch, so only `requestReconcile()` and
 * the resync make anything happen.
 */

import assert from "node:assert/strict";
import { Agent, type AgentTiming } from "../../lib/agent/agent.ts";
import { readConfigDir } from "../../lib/config/directory.ts";
import { type AgentFlags, defaultFlags } from "../../lib/settings/flags.ts";
import { type Dataplane, readAndPlan, switchingDataplane } from "../../lib/policy/dataplane.ts";
import { iptablesDataplane } from "../../lib/iptables/dataplane.ts";
import { nftablesDataplane } from "../../lib/nftables/dataplane.ts";
import { ConfigMapDir } from "../../lab/config_map.ts";
import { eventually } from "../../lab/wait.ts";
import { FakeNatTable } from "../support/fake_iptables.ts";
import { FakeNft } from "../support/fake_nft.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { CaptureLog } from "../support/capture_log.ts";

const chain = "IP-MASQ-AGENT";
const hourMs = 3_600_000;
const timing: AgentTiming = { quietMs: 50, initialBackoffMs: 20, maxBackoffMs: 100 };

function config(...cidrs: string[]): string {
  return `nonMasqueradeCIDRs: [${cidrs.join(", ")}]\n`;
}

/** What a test needs from one dataplane's fakes, in the same words for both. */
interface Plane {
  readonly name: "iptables" | "nftables";
  readonly dataplane: Dataplane;
  /** IPv4 reads of our state (a reconcile is one). */
  reads(): number;
  /** IPv4 writes, failed ones included. */
  writes(): number;
  /** The CIDRs that keep the pod's source (besides link-local), as the dataplane holds them. */
  exempt(): string[];
  /** The whole state, for "byte for byte unchanged". */
  state(): string;
  failNextWrites(count: number): void;
  /** Other programs' edits, each followed by the drift message it must produce. */
  readonly drift: readonly { name: string; apply: () => void; message: RegExp }[];
}

const returnComment =
  '-m comment --comment "ip-masq-agent: local traffic is not subject to MASQUERADE"';

function iptablesPlane(): Plane {
  const fake = new FakeNatTable({ family: "ipv4" });
  const fake6 = new FakeNatTable({ family: "ipv6" });
  return {
    name: "iptables",
    dataplane: iptablesDataplane({ ipv4: fake, ipv6: fake6 }, chain),
    reads: () => fake.reconcileReads,
    writes: () => fake.restoreCalls,
    exempt: () =>
      fake.rules(chain).flatMap((rule) => {
        const match = / -d (\S+) .* -j RETURN$/.exec(rule);
        return match && match[1] !== "169.254.0.0/16" ? [match[1]] : [];
      }),
    state: () => fake.dump(),
    failNextWrites: (count) => fake.failNextRestores(count, "failed"),
    drift: [
      {
        name: "the chain flushed",
        apply: () => fake.external(`*nat\n-F ${chain}\nCOMMIT\n`),
        message: /missing/,
      },
      {
        name: "a rule inserted into our chain",
        apply: () => fake.external(`*nat\n-I ${chain} 1 -j RETURN\nCOMMIT\n`),
        message: /1 unexpected/,
      },
      {
        name: "a RETURN removed",
        apply: () =>
          fake.external(`*nat\n-D ${chain} -d 10.0.0.0/8 ${returnComment} -j RETURN\nCOMMIT\n`),
        message: /1 missing: .*10\.0\.0\.0\/8/,
      },
    ],
  };
}

function nftablesPlane(): Plane {
  const fake = new FakeNft();
  return {
    name: "nftables",
    dataplane: nftablesDataplane(fake),
    reads: () => fake.calls.filter((call) => call.op === "list" && call.family === "ipv4").length,
    writes: () => fake.applyCalls,
    exempt: () => fake.elements("ipv4"),
    state: () => `${fake.list("ipv4")}\n${fake.list("ipv6")}`,
    failNextWrites: (count) => fake.failNextApplies(count),
    drift: [
      {
        name: "the table deleted",
        apply: () => fake.external("delete table ip ip-masq-agent\n"),
        message: /table ip ip-masq-agent does not exist/,
      },
      {
        name: "an element removed",
        apply: () => fake.external("delete element ip ip-masq-agent nonmasq-dst { 10.0.0.0/8 }\n"),
        message: /set nonmasq-dst differs \(1 missing: 10\.0\.0\.0\/8\)/,
      },
      {
        name: "a foreign rule added to our chain",
        apply: () =>
          fake.edit("ipv4", (table) => table.chains[0].rules.unshift({ expr: [{ accept: null }] })),
        message: /1 unexpected: "<\\"accept\\">"/,
      },
    ],
  };
}

const planes = [iptablesPlane, nftablesPlane];

class Running implements AsyncDisposable {
  readonly controller = new AbortController();
  readonly log = new CaptureLog();
  readonly clock = new FakeClock();
  readonly agent: Agent;
  readonly done: Promise<number>;
  exitCode?: number;

  constructor(
    readonly root: string,
    readonly volume: ConfigMapDir,
    readonly plane: Plane,
    flags: Partial<AgentFlags>,
  ) {
    this.agent = new Agent({
      flags: { ...defaultFlags, configDir: volume.path, resyncIntervalMs: hourMs, ...flags },
      log: this.log,
      clock: this.clock,
      readConfigDir: (dir) => readConfigDir(dir),
      dataplane: plane.dataplane,
      randomFullySupported: { ipv4: true, ipv6: true },
      timing,
    });
    this.done = this.agent.run(this.controller.signal);
    this.done.then((code) => this.exitCode = code);
  }

  async parked(): Promise<void> {
    await eventually(
      "the loop to wait for its next resync or retry",
      () =>
        this.exitCode !== undefined ||
        this.clock.pending().some((wait) => wait.kind === "sleep"),
      10_000,
      5,
    );
  }

  async reconcile(): Promise<void> {
    this.agent.requestReconcile();
    await this.parked();
  }

  async wake(): Promise<void> {
    const [next] = this.clock.pending().filter((wait) => wait.kind === "sleep");
    if (next === undefined) assert.fail(`the loop is not waiting:\n${this.log.text()}`);
    await this.clock.advance(next.dueAt - this.clock.now());
    await this.parked();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.controller.abort();
    await this.done;
    await Deno.remove(this.root, { recursive: true });
  }
}

async function start(
  plane: Plane,
  files: Record<string, string> = { "ip-masq-agent": config("10.0.0.0/8") },
  flags: Partial<AgentFlags> = {},
): Promise<Running> {
  const root = await Deno.makeTempDir({ prefix: "ip-masq-agent-dataplanes-" });
  const volume = new ConfigMapDir(`${root}/config`);
  await volume.update(files);
  const running = new Running(root, volume, plane, flags);
  await running.parked();
  return running;
}

for (const makePlane of planes) {
  const name = makePlane().name;

  Deno.test(`${name}: start-up applies the config with one read and one write`, async () => {
    await using agent = await start(makePlane());
    assert.deepEqual(agent.plane.exempt(), ["10.0.0.0/8"]);
    assert.equal(agent.plane.reads(), 1);
    assert.equal(agent.plane.writes(), 1);
    assert.equal(agent.log.count(/^rules written \(ipv4\)/), 1, agent.log.text());
  });

  Deno.test(`${name}: a config change is written by the next reconcile, logged as written`, async () => {
    await using agent = await start(makePlane());
    await agent.volume.update({ "ip-masq-agent": config("10.0.0.0/8", "100.64.0.0/10") });
    await agent.reconcile();
    assert.deepEqual(agent.plane.exempt(), ["10.0.0.0/8", "100.64.0.0/10"]);
    assert.equal(agent.plane.writes(), 2);
    assert.equal(agent.log.count(/^rules written/), 2);
    assert.equal(agent.log.count(/^drift repaired/), 0);
  });

  Deno.test(`${name}: steady state is one read per resync and no write`, async () => {
    await using agent = await start(makePlane());
    for (let i = 0; i < 5; i++) await agent.wake();
    assert.equal(agent.plane.reads(), 6);
    assert.equal(agent.plane.writes(), 1);
  });

  for (const drift of makePlane().drift) {
    Deno.test(`${name}: drift repaired by exactly one reconcile: ${drift.name}`, async () => {
      const plane = makePlane();
      await using agent = await start(plane);
      const applied = plane.state();
      plane.drift.find((candidate) => candidate.name === drift.name)!.apply();
      assert.notEqual(plane.state(), applied);
      await agent.reconcile();
      assert.equal(plane.writes(), 2, "one write repairs it");
      assert.equal(plane.state(), applied);
      assert.equal(agent.log.count(/^drift repaired \(ipv4\): /, "warn"), 1, agent.log.text());
      assert.match(agent.log.matching(/^drift repaired/)[0], drift.message);
      await agent.reconcile();
      assert.equal(plane.writes(), 2, "and then nothing more to write");
    });
  }

  Deno.test(`${name}: a bad config at start exits 2 and touches nothing`, async () => {
    const plane = makePlane();
    const before = plane.state();
    await using agent = await start(plane, {
      "ip-masq-agent": "nonMasqueradeCIDRs: [10.0.0.1/8]\n",
    });
    assert.equal(await agent.done, 2);
    assert.equal(plane.reads() + plane.writes(), 0);
    assert.equal(plane.state(), before);
  });

  Deno.test(`${name}: a bad config at runtime exits 2 and leaves the rules byte for byte`, async () => {
    const plane = makePlane();
    await using agent = await start(plane);
    const applied = plane.state();
    await agent.volume.update({ "ip-masq-agent": "nonMasqueradeCIRDs: [10.0.0.0/8]\n" });
    agent.agent.requestReconcile();
    assert.equal(await agent.done, 2);
    assert.equal(plane.state(), applied);
  });

  Deno.test(`${name}: keep-last-good heals drift with the last good config`, async () => {
    const plane = makePlane();
    await using agent = await start(plane, undefined, { exitOnConfigError: false });
    const applied = plane.state();
    await agent.volume.update({ "ip-masq-agent": "nonMasqueradeCIDRs: [10.0.0.1/8]\n" });
    await agent.reconcile();
    plane.drift[0].apply();
    await agent.reconcile();
    assert.equal(plane.state(), applied);
    assert.equal(agent.exitCode, undefined);
  });

  Deno.test(`${name}: failing writes are retried with backoff, then exit 1 after one resync`, async () => {
    const plane = makePlane();
    plane.failNextWrites(1000);
    await using agent = await start(plane, undefined, { resyncIntervalMs: 1000 });
    for (let wakes = 0; agent.exitCode === undefined; wakes++) {
      // Bounded: an agent that never gives up fails here, naming it, instead of spinning forever.
      if (wakes === 100) {
        assert.fail(`the agent did not exit after 100 wake-ups:\n${agent.log.text()}`);
      }
      await agent.wake();
    }
    assert.equal(agent.exitCode, 1);
    assert.equal(plane.writes(), 13, "the first attempt and 12 retries within 1000 ms");
    assert.equal(agent.log.count(/^giving up/, "error"), 1, agent.log.text());
  });
}

// --- switching dataplanes on a running node

/** Every call into both fakes, in order, by dataplane and kind. */
function journal() {
  const calls: string[] = [];
  const iptables = new FakeNatTable({ family: "ipv4" });
  const nft = new FakeNft();
  const record = <T extends object>(target: T, label: string): T =>
    new Proxy(target, {
      get: (object, property) => {
        const value = Reflect.get(object, property, object);
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => {
          calls.push(`${label} ${String(property)}`);
          return value.apply(object, args);
        };
      },
    });
  return {
    calls,
    iptables,
    nft,
    recordedIptables: record(iptables, "iptables"),
    recordedNft: record(nft, "nft"),
  };
}

Deno.test("switching to nftables: our nft table is written first, our iptables rules removed next, in the same reconcile", async () => {
  const { calls, iptables, nft, recordedIptables, recordedNft } = journal();
  const clients = { ipv4: recordedIptables, ipv6: new FakeNatTable({ family: "ipv6" }) };
  // What the agent left while it ran with --dataplane=iptables.
  const old = iptablesDataplane({ ipv4: iptables, ipv6: clients.ipv6 }, chain);
  await old.apply("ipv4", await readAndPlan(old, (await desiredFor(config("10.0.0.0/8")))[0]));
  assert.ok(iptables.rules(chain).length > 0);

  const dataplane = switchingDataplane(nftablesDataplane(recordedNft), [
    iptablesDataplane(clients, chain),
  ]);
  await using agent = await start(
    { ...nftablesPlane(), dataplane } as Plane,
    { "ip-masq-agent": config("10.0.0.0/8") },
  );
  assert.deepEqual(nft.elements("ipv4"), ["10.0.0.0/8"]);
  assert.deepEqual(iptables.rules(chain), [], "our chain is gone");
  assert.deepEqual(iptables.rules("POSTROUTING"), [], "and our jump");
  const nftWrite = calls.indexOf("nft apply");
  const iptablesWrite = calls.indexOf("iptables restore");
  assert.ok(nftWrite >= 0 && iptablesWrite > nftWrite, calls.join("\n"));
  assert.match(
    agent.log.text(),
    /rules written \(ipv4\): .*iptables \(nft\): removing IP-MASQ-AGENT/,
  );

  calls.length = 0;
  await agent.wake();
  assert.deepEqual(calls, ["nft listTable"], "a steady resync reads only the chosen dataplane");
});

Deno.test("switching back to iptables: iptables written first, our nft tables removed next", async () => {
  const { calls, iptables, nft, recordedIptables, recordedNft } = journal();
  nft.external(
    "table ip ip-masq-agent {\n\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tmasquerade\n\t}\n}\n",
  );
  const dataplane = switchingDataplane(
    iptablesDataplane(
      { ipv4: recordedIptables, ipv6: new FakeNatTable({ family: "ipv6" }) },
      chain,
    ),
    [nftablesDataplane(recordedNft)],
  );
  await using _agent = await start({ ...iptablesPlane(), dataplane } as Plane);
  assert.ok(iptables.rules(chain).length > 0);
  assert.equal(nft.has("ipv4"), false, "our nft table is gone");
  const iptablesWrite = calls.indexOf("iptables restore");
  const nftWrite = calls.indexOf("nft apply");
  assert.ok(iptablesWrite >= 0 && nftWrite > iptablesWrite, calls.join("\n"));
});

Deno.test("a retired dataplane whose tool is missing counts as clean; any other failure is only a warning", async () => {
  const nft = new FakeNft();
  nft.failNextLists(1, "missing");
  const warnings: string[] = [];
  const iptables = new FakeNatTable({ family: "ipv4" });
  const dataplane = switchingDataplane(
    iptablesDataplane({ ipv4: iptables, ipv6: new FakeNatTable({ family: "ipv6" }) }, chain),
    [nftablesDataplane(nft)],
    (label, family) => warnings.push(`${label} ${family}`),
  );
  const [desired] = await desiredFor(config("10.0.0.0/8"));
  const plan = await readAndPlan(dataplane, desired);
  await dataplane.apply("ipv4", plan);
  assert.equal(nft.listCalls, 1);
  await readAndPlan(dataplane, desired);
  assert.equal(nft.listCalls, 1, "not read again");
  assert.equal(warnings.length, 0);

  const failing = new FakeNft();
  failing.failNextLists(1, "failed");
  const other = switchingDataplane(
    iptablesDataplane(
      { ipv4: new FakeNatTable(), ipv6: new FakeNatTable({ family: "ipv6" }) },
      chain,
    ),
    [nftablesDataplane(failing)],
    (label, family) => warnings.push(`${label} ${family}`),
  );
  const first = await readAndPlan(other, desired);
  assert.ok(first.payload !== null, "the chosen dataplane's own plan stands");
  assert.deepEqual(warnings, ["nftables ipv4"]);
  await readAndPlan(other, desired);
  assert.equal(failing.listCalls, 2, "read again next time");
});

async function desiredFor(text: string) {
  const { loadConfig, desiredChains } = await import("../../lib/policy/desired.ts");
  const loaded = loadConfig({
    kind: "files",
    files: [{ path: "/etc/config/ip-masq-agent", bytes: new TextEncoder().encode(text) }],
  }, defaultFlags);
  return desiredChains(loaded.effective, defaultFlags, { ipv4: true, ipv6: true });
}
