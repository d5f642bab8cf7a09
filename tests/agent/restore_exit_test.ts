/**
 * A failing `iptables-restore` seen from the whole loop, not only from the
 * client: the `Agent` runs lib's own iptables client (`natTableClient`) on an
 * `Exec` that plays iptables-nft over a FakeNatTable — listings print the
 * fake, and a restore either applies to it (exit 0) or, scripted, exits 1
 * with iptables' own words and changes nothing. A restore that exits
 * non-zero must never count as written: the loop retries with backoff, says
 * why, and gives up (exit 1) after one resync interval; the table is as
 * before. Virtual time; no root, no watch.
 */

import assert from "node:assert/strict";
import { defaultFlags } from "../../lib/settings/flags.ts";
import { Agent } from "../../lib/agent/agent.ts";
import { readConfigDir } from "../../lib/config/directory.ts";
import { iptablesDataplane } from "../../lib/iptables/dataplane.ts";
import type { Exec } from "../../lib/base/exec.ts";
import { natTableClient } from "../../lib/iptables/client.ts";
import { ConfigMapDir } from "../../lab/config_map.ts";
import { eventually } from "../../lab/wait.ts";
import { CaptureLog } from "../support/capture_log.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { FakeNatTable } from "../support/fake_iptables.ts";
import { upstreamJumpLine, upstreamReturnLine } from "../support/upstream_rules.ts";

/** iptables-nft on a fake table: `-S [CHAIN]` and `-restore`; `failRestores` exit 1 first. */
function iptablesOn(fake: FakeNatTable, failRestores: number) {
  const restores: number[] = [];
  const exec: Exec = async (command, args, options = {}) => {
    if (command === "iptables-nft" && args.includes("-S")) {
      const chain = args[args.indexOf("-S") + 1];
      if (chain === undefined) return { code: 0, stdout: await fake.listTable(), stderr: "" };
      const listing = await fake.listChain(chain);
      return listing === null
        ? { code: 1, stdout: "", stderr: "iptables: No chain/target/match by that name.\n" }
        : { code: 0, stdout: listing, stderr: "" };
    }
    if (command === "iptables-nft-restore") {
      if (restores.length < failRestores) {
        restores.push(1);
        return {
          code: 1,
          stdout: "",
          stderr: "iptables-nft-restore: line 3 failed: No chain/target/match by that name.\n",
        };
      }
      restores.push(0);
      await fake.restore(options.stdin ?? "");
      return { code: 0, stdout: "", stderr: "" };
    }
    throw new Error(`unexpected exec: ${command} ${args.join(" ")}`);
  };
  return { exec, restores };
}

async function run(failRestores: number) {
  const root = await Deno.makeTempDir({ prefix: "imt-restore-exit-" });
  const volume = new ConfigMapDir(`${root}/config`);
  await volume.update({ "ip-masq-agent": "nonMasqueradeCIDRs: [10.0.0.0/8]\n" });
  const fake = new FakeNatTable({ family: "ipv4" });
  const { exec, restores } = iptablesOn(fake, failRestores);
  const log = new CaptureLog();
  const clock = new FakeClock();
  const controller = new AbortController();
  const agent = new Agent({
    flags: { ...defaultFlags, configDir: volume.path, resyncIntervalMs: 1000 },
    log,
    clock,
    readConfigDir: (dir) => readConfigDir(dir),
    dataplane: iptablesDataplane(
      { ipv4: natTableClient("ipv4", "nft", exec), ipv6: natTableClient("ipv6", "nft", exec) },
      "IP-MASQ-AGENT",
    ),
    randomFullySupported: { ipv4: true, ipv6: true },
    timing: { quietMs: 50, initialBackoffMs: 100, maxBackoffMs: 400 },
  });
  let exitCode: number | undefined;
  const done = agent.run(controller.signal).then((code) => exitCode = code);
  const parked = () =>
    eventually(
      "the loop to wait for its next resync or retry, or to exit",
      () => exitCode !== undefined || clock.pending().some((wait) => wait.kind === "sleep"),
      10_000,
      5,
    );
  /** Wakes the loop until `until` holds; bounded, so a loop that never gets there fails. */
  const wakeUntil = async (what: string, until: () => boolean) => {
    await parked();
    for (let wakes = 0; !until(); wakes++) {
      if (wakes === 50) assert.fail(`${what}: not after 50 wake-ups\n${log.text()}`);
      const [next] = clock.pending().filter((wait) => wait.kind === "sleep");
      await clock.advance(next.dueAt - clock.now());
      await parked();
    }
  };
  const stop = async () => {
    controller.abort();
    await done;
    await Deno.remove(root, { recursive: true });
  };
  return { fake, restores, log, wakeUntil, stop, exit: () => exitCode };
}

Deno.test("a restore that exits 1 is a failure: retried, never logged as written, table untouched, exit 1", async () => {
  const agent = await run(1_000);
  try {
    await agent.wakeUntil("the agent to give up", () => agent.exit() !== undefined);
    assert.equal(agent.exit(), 1, agent.log.text());
    assert.equal(agent.log.count(/rules written/), 0, agent.log.text());
    assert.ok(agent.log.count(/^applying rules failed/) >= 2, agent.log.text());
    assert.match(agent.log.text(), /line 3 failed: No chain\/target\/match by that name/);
    assert.match(agent.log.text(), /giving up/);
    assert.ok(agent.restores.length >= 3 && agent.restores.every((code) => code === 1));
    assert.deepEqual(agent.fake.rules("POSTROUTING"), [], "nothing was written");
    assert.equal(await agent.fake.listChain("IP-MASQ-AGENT"), null);
  } finally {
    await agent.stop();
  }
});

Deno.test("after restores that exit 1, one that exits 0 is written and then verified in sync", async () => {
  const agent = await run(2);
  try {
    await agent.wakeUntil("the rules written", () => agent.log.count(/rules written/) === 1);
    assert.deepEqual(agent.restores, [1, 1, 0]);
    assert.equal(agent.log.count(/^applying rules failed/), 2, agent.log.text());
    assert.deepEqual(agent.fake.rules("POSTROUTING"), [upstreamJumpLine()]);
    assert.ok(agent.fake.rules("IP-MASQ-AGENT").includes(upstreamReturnLine("10.0.0.0/8")));
    const reads = agent.fake.reconcileReads;
    await agent.wakeUntil("the next resync's read", () => agent.fake.reconcileReads > reads);
    assert.equal(agent.restores.length, 3, "the written rules read back in sync: no rewrite");
    assert.equal(agent.exit(), undefined);
  } finally {
    await agent.stop();
  }
});
