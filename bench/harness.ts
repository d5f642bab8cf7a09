/**
 * Building blocks of the benchmark: config file contents, starting an agent
 * and reading its chain, reading CPU time and RSS from /proc, klog line
 * timestamps, percentiles, and one registry that tears down every namespace,
 * agent and temp dir in `finally`. The config directory (lab/config_map.ts)
 * and the counting PATH shim (lab/tool_log.ts, extended in tools.ts) are the
 * tests' own.
 *
 * @module
 */

import type { Backend } from "../lab/host.ts";
import { AgentProcess } from "../lab/agent_process.ts";
import { NetNs } from "../lab/netns.ts";
import { sleep } from "../lab/wait.ts";

/** Progress goes to stderr; the Markdown result goes to stdout. */
export function progress(message: string): void {
  const time = new Date().toISOString().slice(11, 23);
  Deno.stderr.writeSync(new TextEncoder().encode(`[bench ${time}] ${message}\n`));
}

// ---------------------------------------------------------------------------------------------
// Cleanup

/** Everything the benchmark creates, released in reverse order even when a step throws. */
export class Resources {
  readonly #agents = new Set<AgentProcess>();
  readonly #namespaces = new Set<NetNs>();
  readonly #dirs = new Set<string>();

  async namespace(label: string): Promise<NetNs> {
    const ns = await NetNs.create(label);
    this.#namespaces.add(ns);
    return ns;
  }

  async tempDir(prefix: string): Promise<string> {
    const dir = await Deno.makeTempDir({ prefix });
    this.#dirs.add(dir);
    return dir;
  }

  async agent(options: Parameters<typeof AgentProcess.start>[0]): Promise<AgentProcess> {
    const agent = await AgentProcess.start(options);
    this.#agents.add(agent);
    return agent;
  }

  /** SIGTERM, then SIGKILL after `graceMs`; always waits for the wrapper to exit. */
  async stopAgent(agent: AgentProcess, graceMs = 3000): Promise<void> {
    agent.kill("SIGTERM");
    const timer = setTimeout(() => agent.kill("SIGKILL"), graceMs);
    try {
      await agent.wait();
    } finally {
      clearTimeout(timer);
      this.#agents.delete(agent);
    }
  }

  async disposeNamespace(ns: NetNs): Promise<void> {
    this.#namespaces.delete(ns);
    await ns.dispose();
  }

  async releaseAll(): Promise<void> {
    for (const agent of [...this.#agents]) {
      await this.stopAgent(agent, 1000).catch(() => {});
    }
    for (const ns of [...this.#namespaces]) await this.disposeNamespace(ns).catch(() => {});
    for (const dir of [...this.#dirs]) {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      this.#dirs.delete(dir);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The agent

/** Our chain (the default `--masq-chain`). */
export const chain = "IP-MASQ-AGENT";

/** The "4 CIDRs" of issue 9's harness: upstream's default non-masquerade ranges. */
export const fourCidrs: readonly string[] = [
  "10.0.0.0/8",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "100.64.0.0/10",
];

/** The line the agent logs once `iptables-restore` has returned: the rules are in the kernel. */
export const rulesWritten = (family: "ipv4" | "ipv6"): RegExp =>
  new RegExp(`^rules written \\(${family}\\)`);

/** How a row names the agent run that produced it. */
export const agentCommand = (args: readonly string[]): string =>
  ["deno task start", ...args].join(" ");

/** Starts an agent and waits (polling every 10 ms) until it logs `ready`. */
export async function startAgent(
  res: Resources,
  options: Parameters<Resources["agent"]>[0],
  ready: RegExp,
  timeoutMs = 120_000,
): Promise<{ agent: AgentProcess; pid: number }> {
  const agent = await res.agent(options);
  const seen = await waitForLine(agent, ready, { timeoutMs, pollMs: 10 });
  if (!seen) throw new Error(`agent never logged ${ready}; stderr:\n${agent.stderr}`);
  return { agent, pid: await agent.agentPid() };
}

/** `-A` lines of one nat chain in the namespace, read with the backend's own `-S CHAIN`. */
export async function chainRules(
  ns: NetNs,
  bin: string,
  backend: Backend,
  name = chain,
): Promise<string[]> {
  const result = await ns.exec([`${bin}/iptables-${backend}`, "-t", "nat", "-S", name]);
  if (result.code !== 0) return [];
  return result.stdout.split("\n").filter((line) => line.startsWith("-A "));
}

// ---------------------------------------------------------------------------------------------
// Config files

export function configYaml(cidrs: readonly string[], cidrLimit?: number): string {
  const lines = cidrLimit === undefined ? [] : [`cidrLimit: ${cidrLimit}`];
  lines.push("masqLinkLocal: false", "nonMasqueradeCIDRs:", ...cidrs.map((cidr) => `  - ${cidr}`));
  return lines.join("\n") + "\n";
}

/** `n` distinct, non-overlapping IPv4 /24s (10.a.b.0/24), never inside each other. */
export function distinctCidrs(n: number, offset = 0): string[] {
  if (n + offset > 65_536) throw new Error("at most 65536 distinct /24s in 10.0.0.0/8");
  return Array.from({ length: n }, (_, i) => {
    const k = i + offset;
    return `10.${k >> 8}.${k & 255}.0/24`;
  });
}

// ---------------------------------------------------------------------------------------------
// /proc

let clockTicks: number | undefined;

async function ticksPerSecond(): Promise<number> {
  if (clockTicks === undefined) {
    const out = await new Deno.Command("getconf", { args: ["CLK_TCK"] }).output();
    clockTicks = Number(new TextDecoder().decode(out.stdout).trim()) || 100;
  }
  return clockTicks;
}

export interface CpuTimes {
  /** utime + stime of the process (all its threads), seconds. */
  readonly self: number;
  /** cutime + cstime: children the process has waited for (every iptables launch), seconds. */
  readonly children: number;
}

export async function cpuTimes(pid: number): Promise<CpuTimes> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  // Fields after the parenthesised comm start at field 3 (state).
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const field = (n: number) => Number(fields[n - 3]);
  const hz = await ticksPerSecond();
  return { self: (field(14) + field(15)) / hz, children: (field(16) + field(17)) / hz };
}

export function cpuDelta(before: CpuTimes, after: CpuTimes): CpuTimes {
  return { self: after.self - before.self, children: after.children - before.children };
}

/**
 * On-CPU nanoseconds of each live thread of `pid` (the first field of
 * `/proc/<pid>/task/<tid>/schedstat`): the scheduler's own clock, where
 * `/proc/<pid>/stat` counts 10 ms ticks, too coarse for a few ms per resync.
 */
export async function threadCpu(pid: number): Promise<Map<number, number>> {
  const threads = new Map<number, number>();
  for await (const entry of Deno.readDir(`/proc/${pid}/task`)) {
    const text = await Deno.readTextFile(`/proc/${pid}/task/${entry.name}/schedstat`)
      .catch(() => undefined);
    if (text !== undefined) threads.set(Number(entry.name), Number(text.split(" ")[0]));
  }
  return threads;
}

/**
 * Milliseconds on CPU between two `threadCpu` readings: threads born in
 * between count whole; those that exited in between are missed (`exited`).
 */
export function threadCpuDelta(
  before: ReadonlyMap<number, number>,
  after: ReadonlyMap<number, number>,
): { ms: number; exited: number } {
  let ns = 0;
  for (const [tid, value] of after) ns += value - (before.get(tid) ?? 0);
  const exited = [...before.keys()].filter((tid) => !after.has(tid)).length;
  return { ms: ns / 1e6, exited };
}

export interface Memory {
  /** VmRSS, MiB. */
  readonly rss: number;
  /** RssAnon: heap, V8, stacks (what the process allocated), MiB. */
  readonly anon: number;
  /** RssFile: pages of the deno binary and libraries mapped in, MiB. */
  readonly file: number;
  /** VmHWM: peak RSS, MiB. */
  readonly hwm: number;
}

export async function memory(pid: number): Promise<Memory> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const mib = (key: string) =>
    Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1]) / 1024;
  return { rss: mib("VmRSS"), anon: mib("RssAnon"), file: mib("RssFile"), hwm: mib("VmHWM") };
}

// ---------------------------------------------------------------------------------------------
// Agent log

export interface LogLine {
  /** Wall-clock milliseconds (klog prints microseconds; the agent fills them from ms). */
  readonly at: number;
  readonly message: string;
}

const klogLine = /^[IWEF](\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6})\s+\d+ agent\] (.*)$/;

/** Parses klog text lines (`I0115 10:20:30.123000    1234 agent] message`). */
export function parseLog(text: string): LogLine[] {
  const now = new Date();
  const lines: LogLine[] = [];
  for (const line of text.split("\n")) {
    const match = klogLine.exec(line);
    if (!match) continue;
    const [, month, day, hour, minute, second, micros, message] = match;
    let at = Date.UTC(
      now.getUTCFullYear(),
      Number(month) - 1,
      Number(day),
      Number(hour),
      Number(minute),
      Number(second),
      Math.floor(Number(micros) / 1000),
    );
    // klog has no year: a line from late December read in early January.
    if (at > now.getTime() + 86_400_000) at = new Date(at).setUTCFullYear(now.getUTCFullYear() - 1);
    lines.push({ at, message });
  }
  return lines;
}

/**
 * Waits (polling the collected stderr every `pollMs`) for a log line matching
 * `pattern` in the text logged after `fromOffset`; returns it and when we saw it.
 */
export async function waitForLine(
  agent: AgentProcess,
  pattern: RegExp,
  options: { fromOffset?: number; timeoutMs?: number; pollMs?: number } = {},
): Promise<{ line: LogLine; seenAt: number } | undefined> {
  const { fromOffset = 0, timeoutMs = 10_000, pollMs = 1 } = options;
  const deadline = Date.now() + timeoutMs;
  let scanned = fromOffset;
  let exited = false;
  agent.wait().then(() => exited = true);
  for (;;) {
    const text = agent.stderr;
    const end = text.lastIndexOf("\n") + 1;
    if (end > scanned) {
      const found = parseLog(text.slice(scanned, end)).find((line) => pattern.test(line.message));
      if (found) return { line: found, seenAt: Date.now() };
      scanned = end;
    }
    if (exited || Date.now() > deadline) return undefined;
    await sleep(pollMs);
  }
}

// ---------------------------------------------------------------------------------------------
// Statistics and formatting

/** Nearest-rank percentile (p in 0..100) of unsorted samples. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1];
}

export const median = (samples: readonly number[]) => percentile(samples, 50);

export function fmt(value: number, digits = 0): string {
  if (!Number.isFinite(value)) return "n/a";
  return value.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}
