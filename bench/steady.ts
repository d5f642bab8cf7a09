/**
 * The cost of a steady resync: agent CPU, the tools' CPU and RSS over N
 * timer resyncs (`--resync-interval=1`), on an empty nat table, on the
 * kube-proxy table (goal 1) and at 10,000 CIDRs (goal 2). The same runs give
 * goal 4's RSS rows; `SteadyRuns` runs each at most once per bench run.
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
  cpuTimes,
  distinctCidrs,
  fmt,
  fourCidrs,
  type Memory,
  memory,
  progress,
  Resources,
  rulesWritten,
  startAgent,
  threadCpu,
  threadCpuDelta,
} from "./harness.ts";
import { describeNode, kubeProxyNode, loadKubeProxyTable, type NodeKind } from "./node.ts";
import { type Options, rerunArgs, type Section } from "./options.ts";
import { type Row, verdict } from "./report.ts";
import { countingTools, program } from "./tools.ts";
import { quoted } from "./upstream.ts";

export type Scenario = "empty" | "kube-proxy" | "10k";

export interface SteadyResult {
  readonly backend: Backend;
  readonly scenario: Scenario;
  readonly command: string;
  readonly resyncs: number;
  readonly seconds: number;
  /** Per resync, milliseconds: the agent's threads (schedstat), and its waited-for children. */
  readonly agentMs: number;
  readonly toolsMs: number;
  /** The agent's utime+stime per resync (10 ms ticks), a cross-check of `agentMs`. */
  readonly agentTicksMs: number;
  /** Agent threads that exited within the window (their CPU there is missed). */
  readonly exitedThreads: number;
  /** At the end of the window. */
  readonly memory: Memory;
  /** Launches per resync, by call (`iptables-nft -t nat -S POSTROUTING`: 1). */
  readonly launches: ReadonlyMap<string, number>;
  /** All launches per resync. */
  readonly launchCount: number;
  /** `*-restore` launches in the window: a steady resync writes nothing. */
  readonly writes: number;
  /** Warning and error lines the agent logged in the window (a held xtables lock, say). */
  readonly warnings: readonly string[];
}

/** The first call after start-up opens each resync; the window spans `resyncs` of them. */
async function measure(
  res: Resources,
  backend: Backend,
  scenario: Scenario,
  options: Options,
): Promise<SteadyResult> {
  const { resyncs } = options;
  const node: NodeKind = scenario === "kube-proxy" ? "kube-proxy" : "empty";
  const cidrs = scenario === "10k" ? distinctCidrs(options.cidrs) : [...fourCidrs];
  const table = kubeProxyNode(options.services);
  progress(
    `steady, ${backend}: ${describeNode(node, table)}, ${fmt(cidrs.length)} CIDRs, ` +
      `${resyncs} resyncs at --resync-interval=1`,
  );
  const root = await res.tempDir("imb-steady-");
  const { log, bin } = await countingTools(backend, root);
  const ns = await res.namespace("steady");
  if (node === "kube-proxy") await loadKubeProxyTable(ns, bin, backend, table);
  const dir = await ConfigMapDir.create(`${root}/config`, {
    "ip-masq-agent": configYaml(cidrs, scenario === "10k" ? cidrs.length : undefined),
  });
  const args = [`--iptables-mode=${backend}`, "--resync-interval=1"];
  const { agent, pid } = await startAgent(
    res,
    { ns, binDir: log.binDir, configDir: dir.path, args },
    rulesWritten("ipv4"),
  );
  await sleep(200);
  const startup = (await log.calls()).length;

  // Waits for the next call; a resync that takes longer than this is a failure worth reporting.
  const stallMs = 120_000;
  let calls: string[] = [];
  const waitUntil = async (done: () => boolean, what: string) => {
    const deadline = Date.now() + stallMs;
    for (;;) {
      calls = await log.calls(startup);
      if (done()) return;
      if (Date.now() > deadline) {
        throw new Error(
          `${what} did not happen within ${stallMs / 1000} s; stderr:\n` +
            agent.stderr.slice(-2000),
        );
      }
      await sleep(5);
    }
  };
  await waitUntil(() => calls.length > 0, "the first resync");
  const marker = calls[0];
  const logFrom = agent.stderr.length;
  const before = await cpuTimes(pid);
  const threadsBefore = await threadCpu(pid);
  const startedAt = performance.now();
  const markers = () => calls.filter((call) => call === marker).length;
  for (let seen = 1; seen <= resyncs;) {
    await waitUntil(() => markers() > seen, `resync ${seen + 1}`);
    seen = markers();
  }
  const after = await cpuTimes(pid);
  const threads = threadCpuDelta(threadsBefore, await threadCpu(pid));
  const seconds = (performance.now() - startedAt) / 1000;
  const mem = await memory(pid);
  const warnings = agent.stderr.slice(logFrom).split("\n").filter((line) =>
    /^[WE]\d{4} /.test(line)
  );
  await res.stopAgent(agent);
  await res.disposeNamespace(ns);

  // The window: from marker 1 up to (not including) marker resyncs + 1.
  const ends = calls.flatMap((call, i) => (call === marker ? [i] : []));
  const window = calls.slice(ends[0], ends[resyncs]);
  const counted = new Map<string, number>();
  for (const call of window) counted.set(call, (counted.get(call) ?? 0) + 1);
  const launches = new Map([...counted].map(([call, n]) => [call, n / resyncs]));
  const cpu = cpuDelta(before, after);
  const result: SteadyResult = {
    backend,
    scenario,
    command: `${agentCommand(args)} (${describeNode(node, table)}; ${fmt(cidrs.length)} CIDRs)`,
    resyncs,
    seconds,
    agentMs: threads.ms / resyncs,
    toolsMs: (cpu.children * 1000) / resyncs,
    agentTicksMs: (cpu.self * 1000) / resyncs,
    exitedThreads: threads.exited,
    memory: mem,
    launches,
    launchCount: window.length / resyncs,
    writes: window.filter((call) => program(call).endsWith("-restore")).length,
    warnings,
  };
  progress(
    `   ${resyncs} resyncs in ${fmt(seconds, 1)} s: agent ${fmt(result.agentMs, 1)} ms ` +
      `(ticks ${fmt(result.agentTicksMs, 1)} ms, ${threads.exited} threads exited), tools ` +
      `${fmt(result.toolsMs, 1)} ms per resync; RSS ${fmt(mem.rss, 1)} MiB (peak ` +
      `${fmt(mem.hwm, 1)}); ${window.length / resyncs} launches per resync; ` +
      `${warnings.length} warnings${warnings.length > 0 ? `, first: ${warnings[0]}` : ""}`,
  );
  return result;
}

/** Each (backend, scenario) measured once, whichever section asks first. */
export class SteadyRuns {
  readonly #runs = new Map<string, Promise<SteadyResult>>();
  constructor(readonly res: Resources, readonly options: Options) {}

  get(backend: Backend, scenario: Scenario): Promise<SteadyResult> {
    const key = `${backend}/${scenario}`;
    let run = this.#runs.get(key);
    if (!run) {
      run = measure(this.res, backend, scenario, this.options);
      this.#runs.set(key, run);
    }
    return run;
  }
}

const ms = (value: number) => `${fmt(value, value < 10 ? 1 : 0)} ms`;
const mib = (value: number) => `${fmt(value, 1)} MiB`;

/** Names what the agent warned about in the window, which explains a slow or odd run. */
function warned(result: SteadyResult): string {
  if (result.warnings.length === 0) return "";
  const first = result.warnings[0].replace(/^\S+ \S+\s+\d+ \S+\] /, "").slice(0, 80);
  return `; ${result.warnings.length} warnings logged, e.g. "${first}"`;
}

function launchSummary(result: SteadyResult): string {
  const parts = [...result.launches].map(([call, n]) => `\`${call}\` × ${fmt(n, 2)}`);
  return parts.join(", ") + (result.writes > 0 ? `; ${result.writes} writes` : "");
}

/** Goal 1: the kube-proxy node against the empty one, per backend. */
export async function nodeRows(runs: SteadyRuns, backend: Backend): Promise<Row[]> {
  const empty = await runs.get(backend, "empty");
  const kube = await runs.get(backend, "kube-proxy");
  const rerun = rerunArgs("node", backend);
  const toolsGoalMs = backend === "nft" ? 150 : 758;
  const ratio = kube.agentMs / empty.agentMs;
  const rssDelta = kube.memory.rss - empty.memory.rss;
  const section = (result: SteadyResult) =>
    `over ${result.resyncs} resyncs in ${fmt(result.seconds, 1)} s` + warned(result);
  return [
    {
      group: "ours",
      measurement: `empty nat table, per steady resync: agent CPU / tools' CPU / RSS (peak) ` +
        `(${section(empty)})`,
      backend,
      result: `${ms(empty.agentMs)} / ${ms(empty.toolsMs)} / ${mib(empty.memory.rss)} ` +
        `(${mib(empty.memory.hwm)})`,
      goal: "— (the baseline of the rows below)",
      quoted: quoted.emptyTable[backend],
      verdict: "info",
      command: empty.command,
      rerun,
    },
    {
      group: "ours",
      measurement: `kube-proxy node: agent CPU per steady resync (${section(kube)})`,
      backend,
      result: `${ms(kube.agentMs)} (${fmt(ratio, 2)}× the empty table's ` +
        `${ms(empty.agentMs)}; utime+stime ${ms(kube.agentTicksMs)} vs ${ms(empty.agentTicksMs)})`,
      goal: `≤ 2× the empty table (≤ ${ms(2 * empty.agentMs)})`,
      quoted: quoted.kubeProxyAgentCpu[backend],
      verdict: verdict(ratio <= 2),
      command: kube.command,
      rerun,
    },
    {
      group: "ours",
      measurement: `kube-proxy node: the tools' CPU per steady resync, ${
        fmt(kube.launchCount, Number.isInteger(kube.launchCount) ? 0 : 2)
      } launches, each with ~0.8 ms of shim \`sh\` (${section(kube)})`,
      backend,
      result: ms(kube.toolsMs),
      goal: backend === "nft" ? "≤ 150 ms" : "< 758 ms (v2's)",
      quoted: quoted.kubeProxyToolsCpu[backend],
      verdict: verdict(backend === "nft" ? kube.toolsMs <= 150 : kube.toolsMs < toolsGoalMs),
      command: kube.command,
      rerun,
    },
    {
      group: "ours",
      measurement: `kube-proxy node: RSS after the resyncs (peak since spawn, start-up included)`,
      backend,
      result: `${mib(kube.memory.rss)} (${rssDelta >= 0 ? "+" : ""}${fmt(rssDelta, 1)} MiB vs ` +
        `the empty table; peak ${mib(kube.memory.hwm)})`,
      goal: `≤ the empty table + 5 MiB (≤ ${mib(empty.memory.rss + 5)})`,
      quoted: quoted.kubeProxyRss[backend],
      verdict: verdict(rssDelta <= 5),
      command: kube.command,
      rerun,
    },
    {
      group: "ours",
      measurement: "launches per steady resync (PATH shim): empty table; kube-proxy node",
      backend,
      result: launchSummary(empty) === launchSummary(kube)
        ? `both: ${launchSummary(kube)}`
        : `${launchSummary(empty)}; ${launchSummary(kube)}`,
      goal: "— (reported; no writes)",
      quoted: quoted.none,
      verdict: empty.writes + kube.writes === 0 ? "info" : "FAIL",
      command: kube.command,
      rerun,
    },
  ];
}

/** Goal 2: a steady resync at 10,000 CIDRs. */
export async function resync10kRows(runs: SteadyRuns, backend: Backend): Promise<Row[]> {
  const result = await runs.get(backend, "10k");
  const section: Section = "resync10k";
  return [{
    group: "steady",
    measurement: `agent CPU per steady resync at ${fmt(runs.options.cidrs)} CIDRs ` +
      `(${result.resyncs} resyncs in ${fmt(result.seconds, 1)} s${warned(result)}; launches: ` +
      `${launchSummary(result)})`,
    backend,
    result: `${ms(result.agentMs)} (utime+stime ${ms(result.agentTicksMs)}; ` +
      `${ms(result.agentMs + result.toolsMs)} with tools)`,
    goal: "≤ 50 ms",
    quoted: quoted.resync10k,
    verdict: verdict(result.agentMs <= 50 && result.writes === 0),
    command: result.command,
    rerun: rerunArgs(section, backend),
  }];
}
