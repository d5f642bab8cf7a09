/**
 * Goal 4: RSS with 4 and with 10,000 CIDRs (from the steady runs), no growth
 * over many reconciles (SIGHUP-driven), and the floor any `deno run` starts
 * from.
 *
 * @module
 */

import type { Backend } from "../lab/host.ts";
import { ConfigMapDir } from "../lab/config_map.ts";
import { sleep } from "../lab/wait.ts";
import {
  agentCommand,
  configYaml,
  cpuDelta,
  type CpuTimes,
  cpuTimes,
  fmt,
  fourCidrs,
  type Memory,
  memory,
  progress,
  type Resources,
  rulesWritten,
  startAgent,
} from "./harness.ts";
import { type Options, rerunArgs } from "./options.ts";
import { type Row, verdict } from "./report.ts";
import type { SteadyRuns } from "./steady.ts";
import { countingTools, program } from "./tools.ts";
import { quoted } from "./upstream.ts";

interface Checkpoint extends Memory {
  readonly reconciles: number;
  readonly cpu: CpuTimes;
  readonly at: number;
}

const mib = (value: number) => `${fmt(value, 1)} MiB`;
const signed = (value: number) => `${value >= 0 ? "+" : ""}${fmt(value, 2)} MiB`;

/** RSS of a bare `deno run` of a module that only waits: the floor any Deno agent starts from. */
async function denoFloor(res: Resources): Promise<Memory> {
  const dir = await res.tempDir("imb-floor-");
  await Deno.writeTextFile(`${dir}/idle.ts`, "await new Promise((r) => setTimeout(r, 30_000));\n");
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", `${dir}/idle.ts`],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await sleep(1000);
    return await memory(child.pid);
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
}

async function growth(res: Resources, backend: Backend, reconciles: number) {
  progress(`memory, ${backend}: ${reconciles} SIGHUP-triggered reconciles, --enable-ipv6`);
  const root = await res.tempDir("imb-mem-");
  const { log } = await countingTools(backend, root);
  const ns = await res.namespace("mem");
  const dir = await ConfigMapDir.create(`${root}/config`, {
    "ip-masq-agent": configYaml([...fourCidrs, "fd00:10::/64"]),
  });
  const args = [`--iptables-mode=${backend}`, "--resync-interval=3600", "--enable-ipv6"];
  const { agent, pid } = await startAgent(
    res,
    { ns, binDir: log.binDir, configDir: dir.path, args },
    rulesWritten("ipv6"),
  );
  await sleep(200);
  const startup = (await log.calls()).length;
  let calls: string[] = [];
  const refresh = async () => calls = await log.calls(startup);

  // One reconcile, to learn how many launches one takes: wait until the log is quiet for 300 ms.
  Deno.kill(pid, "SIGHUP");
  for (let quietSince = Date.now(), last = -1; Date.now() - quietSince < 300;) {
    await sleep(10);
    await refresh();
    if (calls.length !== last) [last, quietSince] = [calls.length, Date.now()];
  }
  const perReconcile = calls.length;
  if (perReconcile === 0) throw new Error(`a SIGHUP brought no reconcile:\n${agent.stderr}`);
  const done = () => Math.floor(calls.length / perReconcile);

  const checkpoints: Checkpoint[] = [];
  const sample = async () => {
    const mem = await memory(pid);
    checkpoints.push({
      reconciles: done(),
      ...mem,
      cpu: await cpuTimes(pid),
      at: performance.now(),
    });
  };
  await sample();
  let resent = 0;
  let nextCheckpoint = 100;
  while (done() < reconciles) {
    // One SIGHUP, then wait until the shim log shows that reconcile's last launch. A SIGHUP during
    // a reconcile is coalesced into exactly one more; if nothing follows within 250 ms the trigger
    // was lost (or slow): send another, and say so. The count comes from the log either way.
    const target = done() + 1;
    Deno.kill(pid, "SIGHUP");
    let sentAt = Date.now();
    const deadline = sentAt + 10_000;
    while (done() < target) {
      if (Date.now() > deadline) throw new Error(`reconcile ${target} did not happen in 10 s`);
      if (Date.now() - sentAt > 250) {
        resent++;
        Deno.kill(pid, "SIGHUP");
        sentAt = Date.now();
      }
      await sleep(1);
      await refresh();
    }
    if (done() >= nextCheckpoint) {
      await sleep(20);
      await sample();
      nextCheckpoint += 100;
    }
  }
  await sleep(100);
  await refresh();
  const writes = calls.filter((call) => program(call).endsWith("-restore")).length;
  await res.stopAgent(agent);
  await res.disposeNamespace(ns);
  return { checkpoints, resent, writes, perReconcile, args };
}

export async function memoryRows(
  res: Resources,
  runs: SteadyRuns,
  backend: Backend,
  options: Options,
): Promise<Row[]> {
  const rerun = rerunArgs("memory", backend);
  const rows: Row[] = [];
  for (const [scenario, cidrs, goal] of [["empty", 4, 42], ["10k", options.cidrs, 48]] as const) {
    const result = await runs.get(backend, scenario);
    rows.push({
      group: "memory",
      measurement: `RSS (VmRSS) with ${fmt(cidrs)} CIDRs after ${result.resyncs} steady resyncs ` +
        `(RssAnon ${mib(result.memory.anon)} + RssFile ${mib(result.memory.file)}; ` +
        `peak VmHWM ${mib(result.memory.hwm)})`,
      backend,
      result: mib(result.memory.rss),
      goal: `≤ ${goal} MiB`,
      quoted: scenario === "empty" ? quoted.rss4 : quoted.rss10k,
      verdict: verdict(result.memory.rss <= goal),
      command: result.command,
      rerun,
    });
  }

  const { checkpoints, resent, writes, perReconcile, args } = await growth(
    res,
    backend,
    options.reconciles,
  );
  const first = checkpoints.find((point) => point.reconciles >= Math.min(100, options.reconciles))!;
  const last = checkpoints[checkpoints.length - 1];
  const series = checkpoints.map((point) => fmt(point.rss, 1)).join(", ");
  const cpu = cpuDelta(first.cpu, last.cpu);
  const count = last.reconciles - first.reconciles;
  progress(`   RSS (MiB) at 1, 100, ..., ${last.reconciles}: ${series}; peak ${mib(last.hwm)}`);
  const command = `${agentCommand(args)} (empty nat table, 4 + 1 IPv6 CIDRs; SIGHUP after ` +
    `each reconcile's last launch)`;
  rows.push({
    group: "memory",
    measurement: `RSS growth from reconcile ${first.reconciles} to ${last.reconciles} ` +
      `(RSS after reconcile 1 and every 100th: ${series} MiB; peak VmHWM ${
        mib(last.hwm)
      }; ${perReconcile} launches ` +
      `per reconcile, ${writes} writes in all` +
      (resent > 0 ? `; ${resent} SIGHUPs re-sent after 250 ms without a reconcile` : "") + ")",
    backend,
    result: `${signed(last.rss - first.rss)} (RssAnon ${signed(last.anon - first.anon)})`,
    goal: "no growth (≤ +1 MiB: GC noise)",
    quoted: quoted.none,
    verdict: verdict(last.rss - first.rss <= 1),
    command,
    rerun,
  });
  if (count > 0) {
    rows.push({
      group: "memory",
      measurement: `CPU per reconcile in that loop (${count} reconciles in ` +
        `${fmt((last.at - first.at) / 1000, 1)} s, both families)`,
      backend,
      result: `${fmt((cpu.self * 1000) / count, 1)} ms agent + ` +
        `${fmt((cpu.children * 1000) / count, 1)} ms tools`,
      goal: "— (reported)",
      quoted: quoted.none,
      verdict: "info",
      command,
      rerun,
    });
  }
  return rows;
}

/** Once per bench run: it does not depend on the backend. */
export async function floorRow(res: Resources): Promise<Row> {
  const floor = await denoFloor(res);
  return {
    group: "memory",
    measurement: `the floor: a bare \`deno run\` of a module that only waits, 1 s after spawn ` +
      `(RssAnon ${mib(floor.anon)} + RssFile ${mib(floor.file)})`,
    backend: "—",
    result: mib(floor.rss),
    goal: "— (reference)",
    quoted: quoted.floor,
    verdict: "info",
    command: `deno run --no-prompt idle.ts (outside any namespace)`,
    rerun: rerunArgs("memory", "—"),
  };
}
