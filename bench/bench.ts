/**
 * `deno task bench`: the numbers of issue 3 ("Live reconciliation"), measured
 * as root in throwaway network namespaces against real iptables, with the real
 * entry point (`deno task start`'s command line and permissions) and a
 * kubelet-style config directory. Prints a Markdown report on stdout
 * (progress on stderr). Options: --backends=nft,legacy --swaps=50 --resyncs=15
 * --reconciles=1000 --startup-runs=5 --sizes=64,1000,10000 --only=1,2,3,4,5.
 *
 * @module
 */

import { netnsSkipReason } from "../lab/host.ts";
import type { Backend } from "../lab/host.ts";
import { backendBin, saveNat } from "../lab/netns.ts";
import { type AgentProcess, repoRoot } from "../lab/agent_process.ts";
import { ConfigMapDir } from "../lab/config_map.ts";
import { ToolLog } from "../lab/tool_log.ts";
import { sleep } from "../lab/wait.ts";
import { parseFlags } from "../lib/core/flags.ts";
import { desiredChains, loadConfig } from "../lib/core/desired.ts";
import { renderFromEmpty } from "../lib/core/rules.ts";
import {
  configYaml,
  cpuDelta,
  cpuTimes,
  distinctCidrs,
  fmt,
  median,
  type Memory,
  memory,
  parseLog,
  percentile,
  progress,
  Resources,
  waitForLine,
} from "./harness.ts";

// ---------------------------------------------------------------------------------------------
// Options

interface Options {
  readonly backends: Backend[];
  readonly swaps: number;
  readonly resyncs: number;
  readonly reconciles: number;
  readonly startupRuns: number;
  readonly sizes: number[];
  /** Items to run (1-5); all by default. */
  readonly only: Set<string>;
}

function parseOptions(args: readonly string[]): Options {
  const values = new Map<string, string>();
  for (const arg of args) {
    const match = /^--([a-z-]+)=(.*)$/.exec(arg);
    if (!match) throw new Error(`unknown argument ${arg} (options take the form --name=value)`);
    values.set(match[1], match[2]);
  }
  const int = (name: string, fallback: number) => {
    const value = Number(values.get(name) ?? fallback);
    if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a positive int`);
    values.delete(name);
    return value;
  };
  const backends = (values.get("backends") ?? "nft,legacy").split(",").map((name) => {
    if (name !== "nft" && name !== "legacy") throw new Error(`unknown backend ${name}`);
    return name as Backend;
  });
  values.delete("backends");
  const sizes = (values.get("sizes") ?? "64,1000,10000").split(",").map(Number);
  values.delete("sizes");
  const only = new Set((values.get("only") ?? "1,2,3,4,5").split(","));
  values.delete("only");
  const options = {
    backends,
    swaps: int("swaps", 50),
    resyncs: int("resyncs", 15),
    reconciles: int("reconciles", 1000),
    startupRuns: int("startup-runs", 5),
    sizes,
    only,
  };
  if (values.size > 0) throw new Error(`unknown option --${[...values.keys()][0]}`);
  return options;
}

// ---------------------------------------------------------------------------------------------
// Results

type Verdict = "PASS" | "FAIL" | "info";

interface Row {
  readonly item: string;
  readonly measurement: string;
  readonly backend: string;
  readonly result: string;
  readonly goal: string;
  readonly upstream: string;
  readonly verdict: Verdict;
}

interface ScaleRow {
  readonly backend: Backend;
  readonly cidrs: number;
  readonly renderMs: number;
  readonly loadConfigMs: number;
  readonly applyWallMs: number;
  readonly applyInAgentMs: number;
  readonly recheckWallMs: number;
  readonly recheckWrote: boolean;
  readonly rules: number;
}

const verdict = (pass: boolean): Verdict => (pass ? "PASS" : "FAIL");
const chain = "IP-MASQ-AGENT";
const baseCidrs = ["172.16.0.0/12", "192.168.0.0/16"];
const rulesWritten = (family: "ipv4" | "ipv6") => new RegExp(`^rules written \\(${family}\\)`);

function countChainRules(save: string): number {
  return save.split("\n").filter((line) => line.startsWith(`-A ${chain} `)).length;
}

async function startAgent(
  res: Resources,
  options: Parameters<Resources["agent"]>[0],
  ready: RegExp,
): Promise<{ agent: AgentProcess; pid: number }> {
  const agent = await res.agent(options);
  const seen = await waitForLine(agent, ready, { timeoutMs: 60_000, pollMs: 5 });
  if (!seen) throw new Error(`agent never logged ${ready}; stderr:\n${agent.stderr}`);
  return { agent, pid: await agent.agentPid() };
}

// ---------------------------------------------------------------------------------------------
// 1. Config change to rules applied

async function configChangeLatency(res: Resources, backend: Backend, swaps: number) {
  progress(`1. config change latency, ${backend}: ${swaps} atomic ..data swaps`);
  const root = await res.tempDir("imb-swap-");
  const bin = await backendBin(backend, root);
  const ns = await res.namespace("swap");
  const dir = await ConfigMapDir.create(`${root}/config`, {
    "ip-masq-agent": configYaml(baseCidrs),
  });
  const { agent } = await startAgent(
    res,
    { ns, binDir: bin, configDir: dir.path, args: ["--resync-interval=3600"] },
    rulesWritten("ipv4"),
  );
  await sleep(300);
  const latencies: number[] = [];
  const observed: number[] = [];
  let fallbacks = 0;
  let misses = 0;
  for (let i = 0; i < swaps; i++) {
    const cidr = distinctCidrs(1, i)[0];
    const wanted = `-A ${chain} -d ${cidr} `;
    const fromOffset = agent.stderr.lastIndexOf("\n") + 1;
    const swappedAt = await dir.update({
      "ip-masq-agent": configYaml([...baseCidrs, ...distinctCidrs(i + 1)]),
    });
    const seen = await waitForLine(agent, rulesWritten("ipv4"), { fromOffset, timeoutMs: 5000 });
    if (seen && (await saveNat(ns, bin)).includes(wanted)) {
      latencies.push(seen.line.at - swappedAt);
      observed.push(seen.seenAt - swappedAt);
    } else {
      // No log line (or it did not carry this CIDR): poll iptables-save every ~5 ms up to 10 s.
      fallbacks++;
      let visibleAt: number | undefined;
      while (Date.now() - swappedAt < 10_000) {
        if ((await saveNat(ns, bin)).includes(wanted)) {
          visibleAt = Date.now();
          break;
        }
        await sleep(5);
      }
      if (visibleAt === undefined) misses++;
      latencies.push((visibleAt ?? Infinity) - swappedAt);
    }
    await sleep(100);
  }
  await res.stopAgent(agent);
  await res.disposeNamespace(ns);
  const p50 = percentile(latencies, 50);
  const p99 = percentile(latencies, 99);
  const max = percentile(latencies, 100);
  progress(
    `   p50 ${p50} ms, p99 ${p99} ms, max ${max} ms; observed by the bench p50 ` +
      `${percentile(observed, 50)} ms; fallbacks ${fallbacks}, misses ${misses}`,
  );
  const extra = [
    fallbacks > 0 ? `${fallbacks} measured by polling iptables-save` : "",
    misses > 0 ? `${misses} never visible within 10 s` : "",
  ].filter(Boolean).join("; ");
  return [{
    item: "1",
    measurement: `config change → rules applied (${swaps} \`..data\` swaps, ` +
      "`--resync-interval=3600`): p50 / p99 / max",
    backend,
    result: `${fmt(p50)} / ${fmt(p99)} / ${fmt(max)} ms${extra ? ` (${extra})` : ""}`,
    goal: "p99 < 1 s",
    upstream: "up to 60 s (30 s average)",
    verdict: verdict(p99 < 1000 && misses === 0),
  }] satisfies Row[];
}

// ---------------------------------------------------------------------------------------------
// 2. Steady-state cost

async function steadyState(res: Resources, backend: Backend, resyncs: number) {
  progress(`2. steady state, ${backend}: ${resyncs} resyncs at --resync-interval=1 --enable-ipv6`);
  const root = await res.tempDir("imb-steady-");
  const realBin = await backendBin(backend, root);
  const log = await ToolLog.create(realBin, root, { log: "exec" });
  const ns = await res.namespace("steady");
  const dir = await ConfigMapDir.create(`${root}/config`, {
    "ip-masq-agent": configYaml([...baseCidrs, "fd00:10::/64"]),
  });
  const { agent, pid } = await startAgent(
    res,
    { ns, binDir: log.binDir, configDir: dir.path, args: ["--resync-interval=1", "--enable-ipv6"] },
    rulesWritten("ipv6"),
  );
  await sleep(200);
  const startupCalls = (await log.calls()).length;
  const cpuBefore = await cpuTimes(pid);
  const startedAt = performance.now();
  const deadline = Date.now() + (resyncs * 1.5 + 10) * 1000;
  while (await log.count("iptables-save", startupCalls) < resyncs) {
    if (Date.now() > deadline) throw new Error(`fewer than ${resyncs} resyncs before the deadline`);
    await sleep(20);
  }
  await sleep(300); // the ip6tables-save of the last resync; the next resync is ~1 s away
  const calls = await log.calls();
  const cpu = cpuDelta(cpuBefore, await cpuTimes(pid));
  const elapsed = (performance.now() - startedAt) / 1000;
  await res.stopAgent(agent);
  await res.disposeNamespace(ns);

  const steady = calls.slice(startupCalls);
  const launches = (tool: string) => steady.filter((call) => call.split(" ")[0] === tool).length;
  const observedResyncs = launches("iptables-save");
  const per = (tool: string) => launches(tool) / observedResyncs;
  const steadyCalls = steady.length;
  const known = ["iptables-save", "ip6tables-save", "iptables-restore", "ip6tables-restore"];
  const other = steady.filter((call) => !known.includes(call.split(" ")[0]));
  const total = cpu.self + cpu.children;
  progress(
    `   ${observedResyncs} resyncs in ${fmt(elapsed, 1)} s, ${steadyCalls} launches; ` +
      `startup launches: ${calls.slice(0, startupCalls).join(" | ")}; cpu ${fmt(total, 2)} s`,
  );
  const rows: Row[] = [];
  for (const family of ["ipv4", "ipv6"] as const) {
    const prefix = family === "ipv4" ? "iptables" : "ip6tables";
    const saves = per(`${prefix}-save`);
    const restores = per(`${prefix}-restore`);
    const others = other.filter((call) => call.startsWith(`${prefix} `)).length / observedResyncs;
    rows.push({
      item: "2",
      measurement: `${family}: launches per resync — \`${prefix}-save\` / \`${prefix}-restore\` ` +
        `/ other (${observedResyncs} resyncs, PATH shim)`,
      backend,
      result: `${fmt(saves, 2)} / ${fmt(restores, 2)} / ${fmt(others, 2)}`,
      goal: "1 read, 0 writes",
      upstream: "3 launches (`-N`, `-C`, full `iptables-restore` rewrite)",
      verdict: verdict(saves === 1 && restores === 0 && others === 0),
    });
  }
  rows.push({
    item: "2",
    measurement: `CPU per 100 resyncs, agent + children (${observedResyncs} timer resyncs over ` +
      `${fmt(elapsed, 1)} s, both families, scaled to 100)`,
    backend,
    result: `${fmt((total * 100) / observedResyncs, 2)} s (deno ${
      fmt((cpu.self * 100) / observedResyncs, 2)
    } s + iptables tools ${fmt((cpu.children * 100) / observedResyncs, 2)} s)`,
    goal: "— (reported)",
    upstream: "—",
    verdict: "info",
  });
  return rows;
}

// ---------------------------------------------------------------------------------------------
// 3. Memory over 1000 reconciles (SIGHUP-driven)

interface Checkpoint extends Memory {
  readonly reconciles: number;
  readonly cpu: { self: number; children: number };
  readonly at: number;
}

async function memoryGrowth(res: Resources, backend: Backend, reconciles: number) {
  progress(`3. memory, ${backend}: ${reconciles} SIGHUP-triggered reconciles, --enable-ipv6`);
  const root = await res.tempDir("imb-mem-");
  const realBin = await backendBin(backend, root);
  const log = await ToolLog.create(realBin, root, { log: "exec" });
  const ns = await res.namespace("mem");
  const dir = await ConfigMapDir.create(`${root}/config`, {
    "ip-masq-agent": configYaml([...baseCidrs, "fd00:10::/64"]),
  });
  const { agent, pid } = await startAgent(
    res,
    {
      ns,
      binDir: log.binDir,
      configDir: dir.path,
      args: ["--resync-interval=3600", "--enable-ipv6"],
    },
    rulesWritten("ipv6"),
  );
  await sleep(200);
  const startupCalls = (await log.calls()).length;
  const checkpoints: Checkpoint[] = [];
  const sample = async (k: number) => {
    const mem = await memory(pid);
    checkpoints.push({ reconciles: k, ...mem, cpu: await cpuTimes(pid), at: performance.now() });
  };
  await sample(0);
  let v6Saves = 0;
  let scanned = startupCalls;
  let resent = 0;
  const refresh = async () => {
    const fresh = await log.calls(scanned);
    scanned += fresh.length;
    v6Saves += fresh.filter((call) => call.startsWith("ip6tables-save ")).length;
  };
  let nextCheckpoint = 100;
  while (v6Saves < reconciles) {
    // One SIGHUP, then wait until that reconcile reached its last step (ip6tables-save). A
    // SIGHUP arriving during a reconcile should be coalesced into exactly one more; if none
    // follows within 250 ms the trigger was lost (or slow): send another, and say so.
    const target = v6Saves + 1;
    Deno.kill(pid, "SIGHUP");
    let sentAt = Date.now();
    const deadline = sentAt + 10_000;
    while (v6Saves < target) {
      if (Date.now() > deadline) throw new Error(`reconcile ${target} did not happen in 10 s`);
      if (Date.now() - sentAt > 250) {
        resent++;
        Deno.kill(pid, "SIGHUP");
        sentAt = Date.now();
      }
      await sleep(1);
      await refresh();
    }
    if (v6Saves >= nextCheckpoint) {
      await sleep(20);
      await sample(v6Saves);
      nextCheckpoint += 100;
    }
  }
  await sleep(100);
  const restores = await log.count("iptables-restore", startupCalls) +
    await log.count("ip6tables-restore", startupCalls);
  await res.stopAgent(agent);
  await res.disposeNamespace(ns);

  const first = checkpoints.find((checkpoint) =>
    checkpoint.reconciles >= Math.min(100, reconciles)
  )!;
  const last = checkpoints[checkpoints.length - 1];
  const growth = last.rss - first.rss;
  const cpu = cpuDelta(first.cpu, last.cpu);
  const count = last.reconciles - first.reconciles;
  const seconds = (last.at - first.at) / 1000;
  const series = checkpoints.map((checkpoint) => fmt(checkpoint.rss, 1)).join(", ");
  const floor = await denoFloor(res);
  progress(
    `   RSS (MiB) at 0, 100, ..., ${reconciles}: ${series}; peak ${fmt(last.hwm, 1)}; ` +
      `${restores} restores during the loop`,
  );
  const rows: Row[] = [
    {
      item: "3",
      measurement: `RSS (VmRSS) of the agent after ${first.reconciles} reconciles (RssAnon ` +
        `${fmt(first.anon, 1)} MiB + RssFile ${fmt(first.file, 1)} MiB, the latter mostly pages ` +
        `of the deno binary; after start-up: ${fmt(checkpoints[0].rss, 1)} MiB; a bare ` +
        `\`deno run\` of an idle module: ${fmt(floor.rss, 1)} MiB)`,
      backend,
      result: `${fmt(first.rss, 1)} MiB`,
      goal: "< 45 MB",
      upstream: "—",
      verdict: verdict(first.rss * 1.048576 < 45),
    },
    {
      item: "3",
      measurement: `RSS growth from reconcile ${first.reconciles} to ${last.reconciles} ` +
        `(RSS every 100: ${series} MiB; peak VmHWM ${fmt(last.hwm, 1)} MiB)`,
      backend,
      result: `${growth >= 0 ? "+" : ""}${fmt(growth, 2)} MiB (RssAnon ` +
        `${last.anon - first.anon >= 0 ? "+" : ""}${fmt(last.anon - first.anon, 2)} MiB)`,
      goal: "no growth (≤ +1 MiB: GC noise)",
      upstream: "—",
      verdict: verdict(growth <= 1),
    },
    {
      item: "3",
      measurement: `CPU per 100 reconciles, SIGHUP-driven (${count} reconciles in ` +
        `${fmt(seconds, 1)} s, both families; ${restores} writes` +
        (resent > 0 ? `; ${resent} SIGHUPs re-sent after 250 ms without a reconcile` : "") + ")",
      backend,
      result: `${fmt(((cpu.self + cpu.children) * 100) / count, 2)} s (deno ${
        fmt((cpu.self * 100) / count, 2)
      } s + iptables tools ${fmt((cpu.children * 100) / count, 2)} s)`,
      goal: "— (reported)",
      upstream: "—",
      verdict: "info",
    },
  ];
  return rows;
}

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

// ---------------------------------------------------------------------------------------------
// 4. Start-up

async function startUp(res: Resources, backend: Backend, runs: number) {
  progress(`4. start-up, ${backend}: 1 warm-up + ${runs} runs, each in a fresh namespace`);
  const root = await res.tempDir("imb-start-");
  const bin = await backendBin(backend, root);
  const dir = await ConfigMapDir.create(`${root}/config`, {
    "ip-masq-agent": configYaml(baseCidrs),
  });
  const totals: number[] = [];
  const boots: number[] = [];
  for (let run = 0; run <= runs; run++) {
    const ns = await res.namespace("start");
    const spawnedAt = Date.now();
    const agent = await res.agent({ ns, binDir: bin, configDir: dir.path, args: [] });
    const seen = await waitForLine(agent, rulesWritten("ipv4"), { timeoutMs: 60_000 });
    if (!seen) throw new Error(`no "rules written" line; stderr:\n${agent.stderr}`);
    const starting = parseLog(agent.stderr).find((line) => line.message.startsWith("starting"));
    await res.stopAgent(agent);
    await res.disposeNamespace(ns);
    progress(
      `   run ${run}${run === 0 ? " (warm-up, not counted)" : ""}: ` +
        `${seen.line.at - spawnedAt} ms (first log line at ${
          (starting?.at ?? NaN) - spawnedAt
        } ms)`,
    );
    if (run === 0) continue;
    totals.push(seen.line.at - spawnedAt);
    boots.push((starting?.at ?? NaN) - spawnedAt);
  }
  const total = median(totals);
  return [{
    item: "4",
    measurement: `start-up: spawn → first reconcile done (\`rules written\`), median of ${runs} ` +
      `(runs: ${totals.join(", ")} ms); of which spawn → first log line (deno boot, ` +
      `module load): ${fmt(median(boots))} ms`,
    backend,
    result: `${fmt(total)} ms`,
    goal: "< 300 ms",
    upstream: "—",
    verdict: verdict(total < 300),
  }] satisfies Row[];
}

// ---------------------------------------------------------------------------------------------
// 5. Scale

function renderTimes(n: number) {
  const parsed = parseFlags([]);
  if (!parsed.ok) throw new Error(parsed.message);
  const flags = parsed.flags;
  const bytes = new TextEncoder().encode(configYaml(distinctCidrs(n), n));
  const contents = {
    kind: "files" as const,
    files: [{ path: "/etc/config/ip-masq-agent", bytes }],
  };
  const repetitions = n <= 1000 ? 7 : 3;
  const totals: number[] = [];
  const loads: number[] = [];
  let lines = 0;
  for (let i = 0; i < repetitions; i++) {
    const start = performance.now();
    const loaded = loadConfig(contents, flags);
    const loadedAt = performance.now();
    const [desired] = desiredChains(loaded.effective, flags, { ipv4: true, ipv6: true });
    const text = renderFromEmpty(desired);
    totals.push(performance.now() - start);
    loads.push(loadedAt - start);
    lines = text.split("\n").filter((line) => line.startsWith(`-A ${chain} `)).length;
  }
  if (lines !== n + 2) throw new Error(`rendered ${lines} rules for ${n} CIDRs`);
  return { renderMs: median(totals), loadConfigMs: median(loads) };
}

async function scale(res: Resources, backends: readonly Backend[], sizes: readonly number[]) {
  const rows: ScaleRow[] = [];
  const renders = new Map<number, ReturnType<typeof renderTimes>>();
  for (const n of sizes) {
    progress(`5. scale: rendering ${n} CIDRs in-process`);
    renders.set(n, renderTimes(n));
    progress(`   ${fmt(renders.get(n)!.renderMs, 1)} ms`);
  }
  for (const backend of backends) {
    const root = await res.tempDir("imb-scale-");
    const bin = await backendBin(backend, root);
    for (const n of sizes) {
      progress(`5. scale, ${backend}: --once with ${n} CIDRs in a fresh namespace`);
      const dir = await ConfigMapDir.create(`${root}/config-${n}`, {
        "ip-masq-agent": configYaml(distinctCidrs(n), n),
      });
      const ns = await res.namespace("scale");
      const once = async () => {
        const spawnedAt = Date.now();
        const agent = await res.agent({ ns, binDir: bin, configDir: dir.path, args: ["--once"] });
        const timer = setTimeout(() => agent.kill("SIGKILL"), 180_000);
        const result = await agent.wait().finally(() => clearTimeout(timer));
        await res.stopAgent(agent);
        const wallMs = Date.now() - spawnedAt;
        if (result.code !== 0) throw new Error(`--once exited ${result.code}:\n${result.stderr}`);
        const log = parseLog(result.stderr);
        const starting = log.find((line) => line.message.startsWith("starting"));
        const written = log.find((line) => rulesWritten("ipv4").test(line.message));
        return { wallMs, inAgentMs: (written?.at ?? NaN) - (starting?.at ?? NaN), written };
      };
      const apply = await once();
      const rules = countChainRules(await saveNat(ns, bin));
      const recheck = await once();
      await res.disposeNamespace(ns);
      const render = renders.get(n)!;
      rows.push({
        backend,
        cidrs: n,
        ...render,
        applyWallMs: apply.wallMs,
        applyInAgentMs: apply.inAgentMs,
        recheckWallMs: recheck.wallMs,
        recheckWrote: recheck.written !== undefined,
        rules,
      });
      progress(
        `   apply ${apply.wallMs} ms wall (${apply.inAgentMs} ms in the agent), ` +
          `${rules} rules; re-check ${recheck.wallMs} ms`,
      );
    }
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------
// Report

async function commandOutput(argv: string[]): Promise<string> {
  try {
    const out = await new Deno.Command(argv[0], { args: argv.slice(1), stderr: "null" }).output();
    return new TextDecoder().decode(out.stdout).trim();
  } catch {
    return "n/a";
  }
}

async function machine(res: Resources, backends: readonly Backend[]) {
  const root = await res.tempDir("imb-ver-");
  const iptables: string[] = [];
  for (const backend of backends) {
    const bin = await backendBin(backend, root);
    iptables.push(`${backend}: \`${await commandOutput([`${bin}/iptables`, "--version"])}\``);
  }
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo");
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? "unknown CPU";
  const memTotal = /^MemTotal:\s+(\d+)/m.exec(await Deno.readTextFile("/proc/meminfo"))?.[1];
  return {
    iptables: iptables.join("; "),
    deno:
      `deno ${Deno.version.deno} (V8 ${Deno.version.v8}, TypeScript ${Deno.version.typescript})`,
    host: `Linux ${Deno.osRelease()}, ${navigator.hardwareConcurrency} × ${model}, ` +
      `${fmt(Number(memTotal) / 1024 / 1024, 1)} GiB RAM`,
  };
}

/** The commit measured, and any uncommitted change to the agent's code (the tree may be shared). */
async function revision(): Promise<string> {
  const git = (...args: string[]) => commandOutput(["git", "-C", repoRoot, ...args]);
  const head = await git("rev-parse", "--short", "HEAD");
  const dirty =
    (await git("status", "--porcelain", "--", "main.ts", "lib", "deno.json", "deno.lock"))
      .split("\n").filter(Boolean).map((line) => line.trim().replace(/^\S+\s+/, ""));
  return dirty.length === 0
    ? `commit ${head}, agent code clean`
    : `commit ${head} plus uncommitted changes to ${dirty.join(", ")}`;
}

const loadAverage = async () =>
  (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");

function cell(text: string): string {
  return text.replaceAll("|", "\\|");
}

function report(
  rows: readonly Row[],
  scaleRows: readonly ScaleRow[],
  context: {
    date: string;
    command: string;
    revision: string;
    iptables: string;
    deno: string;
    host: string;
    load: string;
    seconds: number;
  },
) {
  const out: string[] = [];
  out.push(
    `Date: ${context.date}  `,
    `Command: \`${context.command}\` (${context.revision})  `,
    `iptables: ${context.iptables}  `,
    `Runtime: ${context.deno}  `,
    `Host: ${context.host}; load average ${context.load}; benchmark took ` +
      `${fmt(context.seconds)} s`,
    "",
    "| # | measurement | backend | result | goal | upstream | verdict |",
    "|---|---|---|---|---|---|---|",
  );
  for (const row of rows) {
    out.push(
      `| ${row.item} | ${cell(row.measurement)} | ${row.backend} | ${cell(row.result)} | ` +
        `${cell(row.goal)} | ${cell(row.upstream)} | ${row.verdict} |`,
    );
  }
  if (scaleRows.length > 0) {
    out.push(
      "",
      "Item 5, scale (`cidrLimit` raised to the CIDR count; one file of distinct /24s):",
      "",
      "| backend | CIDRs | render in-process (of which loadConfig) | apply: `--once` wall " +
        "(in the agent) | rules written | goal: rules | re-check: 2nd `--once` wall (wrote?) " +
        "| verdict |",
      "|---|---|---|---|---|---|---|---|",
    );
    for (const row of scaleRows) {
      const expected = row.cidrs + 2;
      out.push(
        `| ${row.backend} | ${fmt(row.cidrs)} | ${fmt(row.renderMs, 1)} ms ` +
          `(${fmt(row.loadConfigMs, 1)} ms) | ${fmt(row.applyWallMs)} ms ` +
          `(${fmt(row.applyInAgentMs)} ms) | ${fmt(row.rules)} | ${fmt(expected)} ` +
          `| ${fmt(row.recheckWallMs)} ms (${row.recheckWrote ? "yes" : "no"}) | ` +
          `${verdict(row.rules === expected && !row.recheckWrote)} |`,
      );
    }
  }
  out.push("", methods);
  return out.join("\n") + "\n";
}

const methods = `Methods:

- Every agent is the real entry point: \`deno task start\`'s command line and permission set
  (\`-P=agent\`), started by \`lab/agent_process.ts\` inside a fresh network namespace
  with a kubelet-style ConfigMap directory bind-mounted at \`/etc/config\`
  (\`..2026_…/ip-masq-agent\`, \`..data -> ..2026_…\`, \`ip-masq-agent -> ..data/ip-masq-agent\`).
  An update is kubelet's atomic swap: a new timestamped directory, a \`..data_tmp\` symlink renamed
  over \`..data\`, the old directory removed. Logs are the default klog text format.
- 1: each swap adds one new /24 to the file. Latency = timestamp of the agent's \`rules written\`
  log line (printed after \`iptables-restore\` returned) minus \`Date.now()\` right after the rename
  of \`..data\`, same clock; each sample is then confirmed by an \`iptables-save\` in the namespace
  that shows the new CIDR (if the line does not appear, or the CIDR is not there yet, the sample is
  taken by polling \`iptables-save\` every ~5 ms instead, and the row says so). 100 ms pause between
  swaps. p99 is nearest-rank (with 50 samples, the largest but zero).
- 2: the agent's PATH starts with a shim directory whose \`iptables*\` entries are \`sh\` scripts that
  append their name and arguments to a log and \`exec\` the real tool. Launches are counted after
  the first reconcile (start-up: \`--version\` probes plus the initial save/restore per family) and
  divided by the resyncs seen. CPU: \`/proc/<pid>/stat\` of the deno process (found as the \`deno\`
  process in the tree under the harness's \`unshare\`; the wrappers \`unshare\`, \`sh\`,
  \`ip netns exec\` all \`exec\` into it): utime+stime (all threads of the agent) and cutime+cstime
  (every iptables launch it waited for, including the shim's \`sh\`), clock ticks of 10 ms,
  before and after the timer-driven resyncs; idle time between resyncs is included.
- 3: 1000 resyncs at 1/s would take 17 minutes, so reconciles are triggered with SIGHUP instead
  (each SIGHUP = one full reconcile, the same code path as a resync: read the config directory,
  parse, render, one \`iptables-save\` per family, plan, no write). The next SIGHUP is sent as soon
  as the shim log shows the previous reconcile's \`ip6tables-save\` (a SIGHUP during a reconcile is
  coalesced into exactly one more; one that brings no reconcile within 250 ms is sent again and
  the row says how often). Reconciles are counted from the shim log, so the count is exact whatever
  the signals did. RSS splits into RssAnon (heap, V8, stacks) and RssFile (mapped binary pages).
  VmRSS (and VmHWM) from
  \`/proc/<pid>/status\` every 100 reconciles, 20 ms after the 100th; 1 MiB = 1.048576 MB.
- 4: from \`Date.now()\` just before spawning (\`unshare\` + overlay mount + \`ip netns exec\` +
  \`deno run\`, a few ms of wrapper) to the timestamp of the first \`rules written\` line; default
  flags (IPv4 only, one \`iptables --version\` probe, one save, one restore). \`deno run\` type-checks
  nothing in Deno 2; it loads the cached modules and npm packages (\`yaml\`, \`@logtape/logtape\`). One
  warm-up run is not counted.
- 5: render = \`loadConfig\` (parse + validate + merge, with findings) + \`desiredChains\` +
  \`renderFromEmpty\`, in-process, median of 7 (3 for 10,000). Apply = wall time of
  \`deno task start --once\` against a fresh namespace (the "in the agent" part is from the
  \`starting\` line to the \`rules written\` line, i.e. without deno start-up); rules written =
  \`-A IP-MASQ-AGENT\` lines in \`iptables-save\` afterwards (expected: the CIDRs + link-local +
  MASQUERADE). Re-check = a second \`--once\` in the same namespace, which must find the chain in
  sync and write nothing: the cost of one resync at that size.
- The machine may be shared: the load average is printed above. Goals are not assertions in tests.
`;

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<number> {
  const options = parseOptions(Deno.args);
  if (netnsSkipReason) {
    console.error(`cannot run the benchmark: ${netnsSkipReason}`);
    return 2;
  }
  const res = new Resources();
  const startedAt = performance.now();
  const date = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) return;
    interrupted = true;
    progress("interrupted: cleaning up");
    res.releaseAll().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  // Every wait below is bounded; this is the backstop for anything that still hangs.
  const watchdog = setTimeout(() => {
    progress("the benchmark ran longer than 20 minutes: cleaning up and exiting");
    res.releaseAll().finally(() => Deno.exit(3));
  }, 20 * 60_000);
  try {
    const env = await machine(res, options.backends);
    const load = await loadAverage();
    progress(`${env.iptables}; ${env.deno}; load ${load}`);
    const rows: Row[] = [];
    const only = (item: string) => options.only.has(item);
    for (const backend of only("1") ? options.backends : []) {
      rows.push(...await configChangeLatency(res, backend, options.swaps));
    }
    for (const backend of only("2") ? options.backends : []) {
      rows.push(...await steadyState(res, backend, options.resyncs));
    }
    if (only("3")) rows.push(...await memoryGrowth(res, options.backends[0], options.reconciles));
    if (only("4")) rows.push(...await startUp(res, options.backends[0], options.startupRuns));
    const scaleRows = only("5") ? await scale(res, options.backends, options.sizes) : [];
    const command = [`cd ${repoRoot} && deno task bench`, ...Deno.args].join(" ");
    console.log(report(rows, scaleRows, {
      date,
      command,
      revision: await revision(),
      ...env,
      load: `${load} at start, ${await loadAverage()} at end`,
      seconds: (performance.now() - startedAt) / 1000,
    }));
    return 0;
  } finally {
    clearTimeout(watchdog);
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    await res.releaseAll();
  }
}

Deno.exit(await main());
