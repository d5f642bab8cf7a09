/**
 * The benchmark's Markdown report: a header naming the commit, tools and
 * machine, then one table per goal of issue 9, each row with the command
 * that produced it, and the methods.
 *
 * @module
 */

import type { Backend } from "../lab/host.ts";
import { repoRoot } from "../lab/agent_process.ts";
import { fmt } from "./harness.ts";
import { agentBin } from "./tools.ts";
import type { Quoted } from "./upstream.ts";

export type Verdict = "PASS" | "FAIL" | "info";

export const verdict = (pass: boolean): Verdict => (pass ? "PASS" : "FAIL");

/** The report's sections, in order: issue 9's goals, then what issue 3 measured. */
export const groups = {
  ours: "Goal 1: read only what is ours (a kube-proxy node of 5,000 services)",
  steady: "Goal 2: a steady resync costs what changed",
  apply: "Goal 3: apply at scale",
  memory: "Goal 4: memory",
  startup: "Goal 5: start-up and the readiness probe",
  kept: "Kept from issue 3",
  start:
    "Issue 18: start fast and stay small, as the manifest runs the agent, beside the Go agents",
} as const;

export type Group = keyof typeof groups;

export interface Row {
  readonly group: Group;
  readonly measurement: string;
  readonly backend: Backend | "—";
  readonly result: string;
  readonly goal: string;
  /** The Go agents' and this agent's earlier figures, as issue 9 quotes them. */
  readonly quoted: Quoted;
  readonly verdict: Verdict;
  /** The agent's command line and what it ran against. */
  readonly command: string;
  /** `deno task bench` options that rerun just this row. */
  readonly rerun: string;
}

async function commandOutput(argv: string[]): Promise<string> {
  try {
    const out = await new Deno.Command(argv[0], { args: argv.slice(1), stderr: "null" }).output();
    return new TextDecoder().decode(out.stdout).trim();
  } catch {
    return "n/a";
  }
}

export interface Machine {
  readonly iptables: string;
  readonly deno: string;
  readonly host: string;
}

export async function machine(root: string, backends: readonly Backend[]): Promise<Machine> {
  const iptables: string[] = [];
  for (const backend of backends) {
    const bin = await agentBin(backend, root);
    const version = await commandOutput([`${bin}/iptables-${backend}`, "--version"]);
    iptables.push(`${backend}: \`${version}\``);
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
export async function revision(): Promise<string> {
  const git = (...args: string[]) => commandOutput(["git", "-C", repoRoot, ...args]);
  const head = await git("rev-parse", "--short", "HEAD");
  const dirty =
    (await git("status", "--porcelain", "--", "main.ts", "lib", "deno.json", "deno.lock"))
      .split("\n").filter(Boolean).map((line) => line.trim().replace(/^\S+\s+/, ""));
  return dirty.length === 0
    ? `commit ${head}, agent code clean`
    : `commit ${head} plus uncommitted changes to ${dirty.join(", ")}`;
}

export const loadAverage = async (): Promise<string> =>
  (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");

const cell = (text: string) => text.replaceAll("|", "\\|").replaceAll("\n", " ");

export interface ReportContext extends Machine {
  readonly date: string;
  readonly command: string;
  readonly revision: string;
  readonly load: string;
  readonly seconds: number;
}

export function report(rows: readonly Row[], context: ReportContext): string {
  const out: string[] = [
    `Date: ${context.date}  `,
    `Command: \`${context.command}\` (${context.revision})  `,
    `iptables: ${context.iptables}  `,
    `Runtime: ${context.deno}  `,
    `Host: ${context.host}; load average ${context.load}; benchmark took ` +
    `${fmt(context.seconds)} s  `,
    'v1 = kubernetes-sigs/ip-masq-agent v2.9.1, v2 = Azure/ip-masq-agent-v2, "before" = this ' +
    "agent as issue 9 measured it: all three **quoted from issue 9** (its harness, iptables " +
    "1.8.9), not measured here, except in the issue 18 section, where v1/v2 are measured in " +
    'this run when --peer gives their binaries and "before" is issue 18\'s table.',
  ];
  for (const [group, title] of Object.entries(groups)) {
    const inGroup = rows.filter((row) => row.group === group);
    if (inGroup.length === 0) continue;
    out.push(
      "",
      `### ${title}`,
      "",
      "| measurement | backend | result | goal | v1 | v2 | before | verdict | command |",
      "|---|---|---|---|---|---|---|---|---|",
    );
    for (const row of inGroup) {
      const command = `\`${row.command}\`; rerun: \`deno task bench ${row.rerun}\``;
      out.push(
        `| ${cell(row.measurement)} | ${row.backend} | ${cell(row.result)} | ${cell(row.goal)} | ` +
          `${cell(row.quoted.v1)} | ${cell(row.quoted.v2)} | ${cell(row.quoted.before)} | ` +
          `${row.verdict} | ${cell(command)} |`,
      );
    }
  }
  out.push("", methods);
  return out.join("\n") + "\n";
}

const methods = `Methods:

- Every agent is the real entry point: \`deno task start\`'s command line and permission set
  (\`-P=agent\`), started by \`lab/agent_process.ts\` inside a fresh network namespace with a
  kubelet-style ConfigMap directory bind-mounted at \`/etc/config\`, and always with
  \`--iptables-mode=<backend>\`. Its PATH starts with a directory (\`bench/tools.ts\`) where the
  plain \`iptables*\` names run the measured backend (as \`lab/netns.ts\` \`backendBin\` links
  them) and \`iptables-nft*\`/\`iptables-legacy*\` run their own backend, as Debian installs them.
  Config: \`masqLinkLocal: false\` and the CIDRs named (4 CIDRs = 10.0.0.0/8, 172.16.0.0/12,
  192.168.0.0/16, 100.64.0.0/10; 10,000 CIDRs = distinct 10.a.b.0/24s, \`cidrLimit\` raised).
- The kube-proxy node (\`bench/kube_proxy_table.ts\`, deterministic): what kube-proxy in iptables
  mode writes for 5,000 service ports (\`--services\`) with 2, 3, 3, ... endpoints: KUBE-SERVICES
  (one rule per service plus the NodePort rule), KUBE-SVC-* (KUBE-MARK-MASQ for off-cluster
  sources, then \`-m statistic --mode random --probability\` jumps), KUBE-SEP-* (KUBE-MARK-MASQ,
  DNAT \`--to-destination\`, \`-m comment --comment "ns/svc:port"\`), every 10th a NodePort
  (KUBE-NODEPORTS, KUBE-EXT-*), KUBE-MARK-MASQ, KUBE-POSTROUTING (mark RETURN, \`--xor-mark\`,
  MASQUERADE \`--random-fully\`), a Docker bridge and a CNI hostport rule in POSTROUTING, and
  KUBE-IPTABLES-HINT, KUBE-KUBELET-CANARY and KUBE-PROXY-CANARY in mangle. Loaded with one
  \`iptables-<backend>-restore\` into the bench's namespace before the agent starts; the rule
  count is checked with \`iptables-<backend>-save -t nat\` afterwards.
- Steady resync (goals 1, 2, 4): \`--resync-interval=1\`, IPv4. The PATH shim (\`lab/tool_log.ts\`,
  wrappers that log the call and \`exec\` the real tool) shows each launch; the first call after
  start-up (first \`rules written\` + 200 ms) is the marker of a resync. CPU is read when the
  bench sees marker 1 and marker N+1 (polling the log every 5 ms), so the window is exactly N
  resync periods (idle time included), divided by N. Agent = the deno process's threads' on-CPU
  time from \`/proc/<pid>/task/*/schedstat\` (nanoseconds; a thread that exits inside the window
  would be missed, and the progress line counts them); utime+stime from \`/proc/<pid>/stat\`
  (10 ms ticks, ±10 ms / N) is shown beside as the cross-check. Tools = cutime+cstime of
  \`/proc/<pid>/stat\`: every child the agent waited for, each including the shim's \`sh\`
  (measured apart: about 0.8 ms of CPU per launch on this machine; 10 ms ticks). RSS = VmRSS and VmHWM (peak since spawn, start-up included) from
  \`/proc/<pid>/status\` at marker N+1. 1 MiB = 1,048,576 bytes.
- Probe (goal 5): \`--check\` in the kube-proxy namespace after a \`--once\` applied the rules; it
  must exit 0 (in sync). The agent runs under GNU time (\`/usr/bin/time -f "%e %M"\`, Debian
  package \`time\`): wall = %e (the deno process from fork to exit, 10 ms resolution); peak = %M,
  i.e. getrusage's ru_maxrss: the larger of deno's peak and the peak of any one iptables tool it
  waited for (not their sum). deno's own peak is VmHWM polled every 2 ms while it runs. The bench's
  spawn → exit wall (with \`unshare\`, the mounts and \`ip netns exec\`) is shown beside. One
  warm-up run is not counted; the median is shown.
- Start-up (goals 3, 5): \`Date.now()\` just before spawning (\`unshare\` + overlay mount +
  \`ip netns exec\` + \`deno run\`) to the timestamp of the agent's first \`rules written (ipv4)\`
  line, which the agent logs after \`iptables-restore\` returned, so the rules are in the kernel;
  then one \`iptables-<backend> -t nat -S IP-MASQ-AGENT\` confirms the rule count. The log line,
  not polling the chain: a poll of a 10,000-rule chain is a process launch costing tens of ms on
  the same 2 CPUs as the agent, and would both slow the agent and quantize the result. Each run
  in a fresh namespace; one warm-up run not counted; median.
- Memory growth: reconciles triggered with SIGHUP (each one full reconcile, the resync's code
  path), \`--enable-ipv6\`; the next SIGHUP goes out when the shim log shows the previous
  reconcile's last launch (the number of launches per reconcile is learnt from the first one);
  reconciles are counted from the log, so the count is exact whatever the signals did. VmRSS
  every 100. The floor: a bare \`deno run\` of a module that only waits, 1 s after spawn.
- Config change: each kubelet-style \`..data\` swap adds one /24; latency = the \`rules written\`
  timestamp minus \`Date.now()\` right after the rename, confirmed by reading the chain (else
  polled every 5 ms, and the row says so); 100 ms between swaps; nearest-rank p99.
- The machine may be shared: the load average is printed above. Goals are not assertions in tests.
`;
