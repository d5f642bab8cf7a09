/**
 * Building blocks of the benchmark: config file contents, reading CPU time
 * and RSS from /proc, klog line timestamps, percentiles, and one registry
 * that tears down every namespace, agent and temp dir in `finally`. The
 * config directory (lab/config_map.ts) and the counting PATH shim
 * (lab/tool_log.ts) are the tests' own.
 *
 * @module
 */

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
