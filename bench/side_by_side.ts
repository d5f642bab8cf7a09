/**
 * Issue 18's start-up and size figures, side by side with the Go agents in
 * the same run when the operator points the bench at their binaries
 * (`--peer=v1=PATH --peer=v2=PATH`; `../shared/peers/build.sh` builds them,
 * for measurement only). Our agent runs as the shipped DaemonSet runs it: the
 * container args of examples/ip-masq-agent.yaml (`--iptables-mode=auto`
 * included) after `deno task start`'s command line (its V8 flags and
 * permissions). The peers get the flags they share with it.
 *
 * One method for all three: every iptables and nft tool in the agent's PATH
 * is a wrapper that runs the real tool and, once it exited, appends its
 * completion time (`date +%s%3N`) and command line to a log. "Applied" is the
 * completion of the agent's last write (a `*-restore`, `nft -f`, or an
 * iptables call that appends, inserts or creates) of its start-up burst,
 * taken once the log has been quiet for 500 ms, and checked against the
 * chain (or set) afterwards. Spawn is `Date.now()` just before spawning
 * (`unshare` + mounts + `ip netns exec` + the agent), in a fresh namespace per
 * run; one warm-up run is not counted. RSS at rest is VmRSS 3 s after
 * applied; the peak is VmHWM then.
 *
 * @module
 */

// @ts-types="npm:yaml"
import { parseAllDocuments } from "yaml";
import type { Backend } from "../lab/host.ts";
import { repoRoot } from "../lab/agent_process.ts";
import { plainToolNames } from "../lab/netns.ts";
import { ConfigMapDir } from "../lab/config_map.ts";
import { sleep } from "../lab/wait.ts";
import {
  agentCommand,
  chainRules,
  configYaml,
  distinctCidrs,
  fmt,
  fourCidrs,
  median,
  memory,
  progress,
  type Resources,
} from "./harness.ts";
import { type Options, rerunArgs } from "./options.ts";
import { type Row, verdict } from "./report.ts";
import { agentBin, allToolNames } from "./tools.ts";
import type { Quoted } from "./upstream.ts";

/** The Go agents to measure beside ours: a launcher each (a binary or build.sh's run-v1/run-v2). */
export interface Peers {
  readonly v1?: string;
  readonly v2?: string;
}

/** The container args of the shipped DaemonSet (examples/ip-masq-agent.yaml). */
export async function manifestArgs(): Promise<string[]> {
  const text = await Deno.readTextFile(`${repoRoot}/examples/ip-masq-agent.yaml`);
  for (const doc of parseAllDocuments(text)) {
    if (!("toJS" in doc)) continue;
    // deno-lint-ignore no-explicit-any -- a Kubernetes manifest, read as the JSON it is
    const manifest = doc.toJS() as any;
    if (manifest?.kind !== "DaemonSet") continue;
    const container = manifest.spec.template.spec.containers.find((c: { name: string }) =>
      c.name === "ip-masq-agent"
    );
    if (container?.args) return container.args.map(String);
  }
  throw new Error("examples/ip-masq-agent.yaml: no DaemonSet container ip-masq-agent with args");
}

/** The flags the Go agents share with ours, at the manifest's values. */
const peerArgs = [
  "--masq-chain=IP-MASQ-AGENT",
  "--nomasq-all-reserved-ranges=false",
  "--enable-ipv6=false",
  "--resync-interval=60",
];

function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/** A PATH directory whose iptables and nft names log their completion time (see the module). */
async function timedTools(backend: Backend, root: string): Promise<{ dir: string; log: string }> {
  const real = await agentBin(backend, root);
  const dir = `${root}/timed`;
  const log = `${root}/timed.log`;
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(log, "");
  // The Go agents run the plain names (linked to the backend), ours the backend's own names.
  for (const name of new Set([...allToolNames, ...plainToolNames, "nft"])) {
    const tool = name === "nft" ? "/usr/sbin/nft" : `${real}/${name}`;
    const script = [
      "#!/bin/sh",
      `${shellQuote(tool)} "$@"`,
      "status=$?",
      `printf '%s %s\\n' "$(date +%s%3N)" ${shellQuote(name)}" $*" >> ${shellQuote(log)}`,
      'exit "$status"',
      "",
    ].join("\n");
    await Deno.writeTextFile(`${dir}/${name}`, script, { mode: 0o755 });
    await Deno.chmod(`${dir}/${name}`, 0o755);
  }
  return { dir, log };
}

interface Call {
  readonly at: number;
  readonly call: string;
}

function parseCalls(text: string): Call[] {
  return text.split("\n").filter((line) => line.length > 0).map((line) => {
    const space = line.indexOf(" ");
    return { at: Number(line.slice(0, space)), call: line.slice(space + 1) };
  });
}

/** Whether a logged call changed the ruleset. */
function isWrite(call: string): boolean {
  const [program, ...args] = call.split(" ");
  if (program.endsWith("-restore")) return true;
  if (program === "nft") return args.includes("-f");
  return args.some((arg) =>
    ["-A", "-I", "-N", "--append", "--insert", "--new-chain", "-R", "--replace"].includes(arg)
  );
}

/** Who runs: ours with the manifest's args (and extra ones), or a Go peer. */
interface Runner {
  readonly name: "ours" | "v1" | "v2";
  readonly command?: readonly string[];
  readonly processName?: string;
  readonly args: readonly string[];
  /** v2 accepts at most 64 CIDRs per file (it merges the files of the directory). */
  readonly maxPerFile?: number;
}

interface Sample {
  readonly appliedMs: number;
  readonly restRss: number;
  readonly peakRss: number;
  readonly writes: number;
}

async function spawnToApplied(
  res: Resources,
  backend: Backend,
  runner: Runner,
  files: Record<string, string>,
  expect: { readonly kind: "chain" | "set"; readonly cidrs: number },
  runs: number,
): Promise<Sample[]> {
  const root = await res.tempDir("imb-side-");
  const { dir, log } = await timedTools(backend, root);
  const real = await agentBin(backend, root);
  const config = await ConfigMapDir.create(`${root}/config`, files);
  const samples: Sample[] = [];
  for (let run = 0; run <= runs; run++) {
    await Deno.writeTextFile(log, "");
    const ns = await res.namespace("side");
    const spawnedAt = Date.now();
    const agent = await res.agent({
      ns,
      binDir: dir,
      configDir: config.path,
      args: runner.args,
      command: runner.command,
      processName: runner.processName,
    });
    let exited = false;
    agent.wait().then(() => exited = true);
    // Wait for the first write, then for 500 ms of quiet.
    const deadline = Date.now() + 120_000;
    let seen = 0;
    let quietSince = Date.now();
    let calls: Call[] = [];
    for (;;) {
      await sleep(20);
      calls = parseCalls(await Deno.readTextFile(log));
      if (calls.length !== seen) [seen, quietSince] = [calls.length, Date.now()];
      if (calls.some((c) => isWrite(c.call)) && Date.now() - quietSince >= 500) break;
      if (exited || Date.now() > deadline) {
        throw new Error(`${runner.name}: no rules applied; calls:\n${
          calls.map((c) => c.call)
            .join("\n")
        }\nstderr:\n${agent.stderr.slice(-3000)}`);
      }
    }
    const writes = calls.filter((c) => isWrite(c.call));
    const appliedAt = Math.max(...writes.map((c) => c.at));
    const pid = await agent.agentPid();
    await sleep(Math.max(0, appliedAt + 3000 - Date.now()));
    const mem = await memory(pid);
    let found: number;
    if (expect.kind === "chain") {
      found = (await chainRules(ns, real, backend)).filter((rule) => / -d /.test(rule)).length;
    } else {
      const listed = await ns.exec(["/usr/sbin/nft", "list", "ruleset"]);
      found = (listed.stdout.match(/\d+\.\d+\.\d+\.\d+\/\d+/g) ?? []).length;
    }
    await res.stopAgent(agent);
    await res.disposeNamespace(ns);
    // A chain holds one RETURN per CIDR plus link-local; a set may merge adjacent /24s.
    if (expect.kind === "chain" ? found < expect.cidrs : found === 0) {
      throw new Error(`${runner.name}: ${found} CIDRs in the ruleset, expected ${expect.cidrs}`);
    }
    const sample = {
      appliedMs: appliedAt - spawnedAt,
      restRss: mem.rss,
      peakRss: mem.hwm,
      writes: writes.length,
    };
    progress(
      `   ${runner.name} run ${run}${run === 0 ? " (warm-up, not counted)" : ""}: applied at ` +
        `${sample.appliedMs} ms (${writes.length} writes, last: ${
          writes.at(-1)?.call.slice(0, 60)
        }), RSS 3 s later ${fmt(mem.rss, 1)} MiB, peak ${fmt(mem.hwm, 1)} MiB`,
    );
    if (run === 1) {
      // Where the start goes, launch by launch: each tool's completion after spawn.
      progress(
        `     launches of run 1 (completion after spawn):\n${
          calls.map((c) => `       +${c.at - spawnedAt} ms ${c.call.slice(0, 90)}`).join("\n")
        }`,
      );
    }
    if (run > 0) samples.push(sample);
  }
  return samples;
}

interface Figures {
  readonly ms: number;
  readonly rss: number;
  readonly peak: number;
  readonly runs: readonly number[];
}

function figures(samples: readonly Sample[]): Figures {
  return {
    ms: median(samples.map((s) => s.appliedMs)),
    rss: median(samples.map((s) => s.restRss)),
    peak: Math.max(...samples.map((s) => s.peakRss)),
    runs: samples.map((s) => s.appliedMs),
  };
}

const mib = (value: number | undefined) => value === undefined ? "—" : `${fmt(value, 1)} MiB`;
const ms = (value: number | undefined) => value === undefined ? "—" : `${fmt(value)} ms`;

/** Issue 18's figures for this agent before its work ("before"), from the issue's table. */
const before = { first: "88 ms", apply10k: "640 ms", apply100k: "3,971 ms", rss4: "51 MiB" };

export async function sideBySideRows(
  res: Resources,
  backend: Backend,
  options: Options,
  peers: Peers,
): Promise<Row[]> {
  if (backend !== "nft") return [];
  const manifest = await manifestArgs();
  const ours: Runner = { name: "ours", args: manifest };
  const runners: Runner[] = [ours];
  for (const name of ["v1", "v2"] as const) {
    const path = peers[name];
    if (path) {
      runners.push({
        name,
        command: [path],
        processName: "ip-masq-agent-v",
        args: peerArgs,
        maxPerFile: name === "v2" ? 64 : undefined,
      });
    }
  }
  const rows: Row[] = [];
  const peerNote = runners.length > 1
    ? "; v1/v2 measured in this run with the same method (v2 allows 64 CIDRs per file: " +
      "it gets them in files of 64)"
    : "; v1/v2 not given (--peer=v1=PATH --peer=v2=PATH)";
  const command = (extra: string[], what: string) =>
    `${agentCommand(manifest.concat(extra))} (${what})`;

  const cases = [
    { label: "first rules, 4 CIDRs", cidrs: [...fourCidrs], runs: options.startupRuns },
    {
      label: `${fmt(options.cidrs)} CIDRs applied`,
      cidrs: distinctCidrs(options.cidrs),
      runs: options.applyRuns,
    },
  ];
  for (const { label, cidrs, runs } of cases) {
    const limit = cidrs.length > 64 ? cidrs.length : undefined;
    const measured = new Map<string, Figures>();
    for (const runner of runners) {
      const files: Record<string, string> = {};
      const per = runner.maxPerFile ?? cidrs.length;
      if (per >= cidrs.length) files["ip-masq-agent"] = configYaml(cidrs, limit);
      for (let i = 0; per < cidrs.length && i < cidrs.length; i += per) {
        files[`ip-masq-agent-${String(i / per).padStart(4, "0")}`] = configYaml(
          cidrs.slice(i, i + per),
        );
      }
      progress(`side by side, ${backend}: ${runner.name}, spawn → ${label}, 1 + ${runs} runs`);
      const samples = await spawnToApplied(
        res,
        backend,
        runner,
        files,
        { kind: "chain", cidrs: cidrs.length },
        runs,
      );
      measured.set(runner.name, figures(samples));
    }
    const our = measured.get("ours")!;
    const v1 = measured.get("v1");
    const v2 = measured.get("v2");
    const four = cidrs.length === 4;
    // Goal 1: 4 CIDRs ≤ 2× v1; 10,000 no slower than v1 (the issue's v1 figures when not given).
    const v1Ms = v1?.ms ?? (four ? 31 : 279);
    const bound = four ? 2 * v1Ms : v1Ms;
    const quoted: Quoted = {
      v1: v1 ? ms(v1.ms) : "—",
      v2: v2 ? ms(v2.ms) : "—",
      before: four ? before.first : before.apply10k,
    };
    rows.push({
      group: "start",
      measurement: `spawn → ${label} (iptables dataplane, --iptables-mode=auto on an nft node), ` +
        `median of ${our.runs.length} (runs: ${our.runs.join(", ")} ms)${peerNote}`,
      backend,
      result: ms(our.ms),
      goal: four
        ? `≤ 2× v1 (≤ ${fmt(bound)} ms${v1 ? "" : ", v1 as issue 18 quotes it"})`
        : `≤ v1 (≤ ${fmt(bound)} ms${v1 ? "" : ", v1 as issue 18 quotes it"})`,
      quoted,
      verdict: verdict(our.ms <= bound),
      command: command([], `empty nat table, ${fmt(cidrs.length)} CIDRs`),
      rerun: rerunArgs("start", backend, peerRerun(peers)),
    });
    const rssGoal = four ? 42 : 48;
    rows.push({
      group: "start",
      measurement: `RSS (VmRSS) 3 s after ${label}, median (peak VmHWM: ours ` +
        `${mib(our.peak)}${v1 ? `, v1 ${mib(v1.peak)}` : ""}${v2 ? `, v2 ${mib(v2.peak)}` : ""})`,
      backend,
      result: mib(our.rss),
      goal: `≤ ${rssGoal} MiB`,
      quoted: { v1: mib(v1?.rss), v2: mib(v2?.rss), before: four ? before.rss4 : "72 MiB" },
      verdict: verdict(our.rss <= rssGoal),
      command: command([], `empty nat table, ${fmt(cidrs.length)} CIDRs`),
      rerun: rerunArgs("start", backend, peerRerun(peers)),
    });
  }

  // Goal 2: 100,000 CIDRs on the nftables dataplane, in two files that each fit a ConfigMap.
  const half = 50_000;
  // Distinct /24s in 10.0.0.0/8, then in 11.0.0.0/8.
  const distinct = (n: number, first: number) =>
    Array.from({ length: n }, (_, i) => i + first).map((k) =>
      `${10 + (k >> 16)}.${(k >> 8) & 255}.${k & 255}.0/24`
    );
  const files = {
    "ip-masq-agent": configYaml(distinct(half, 0), half),
    "ip-masq-agent-more": configYaml(distinct(half, half), half),
  };
  const sizes = Object.values(files).map((text) => new TextEncoder().encode(text).length);
  const nftArgs = manifest.filter((arg) => !arg.startsWith("--dataplane="))
    .concat("--dataplane=nftables");
  progress(
    `side by side, ${backend}: ours, spawn → 100,000 CIDRs (nftables), 1 + ${options.applyRuns} runs`,
  );
  const big = figures(
    await spawnToApplied(
      res,
      backend,
      { name: "ours", args: nftArgs },
      files,
      { kind: "set", cidrs: 2 * half },
      options.applyRuns,
    ),
  );
  const what = `two files of 50,000 CIDRs, ${sizes.map((size) => fmt(size)).join(" and ")} bytes`;
  rows.push({
    group: "start",
    measurement: `spawn → 100,000 CIDRs applied with --dataplane=nftables (${what}), median of ` +
      `${big.runs.length} (runs: ${big.runs.join(", ")} ms)`,
    backend,
    result: ms(big.ms),
    goal: "≤ 1,500 ms, each file ≤ 1 MiB",
    quoted: { v1: "—", v2: "—", before: before.apply100k },
    verdict: verdict(big.ms <= 1500 && sizes.every((size) => size <= 1024 * 1024)),
    command: `${agentCommand(nftArgs)} (${what})`,
    rerun: rerunArgs("start", backend),
  });
  rows.push({
    group: "start",
    measurement: "the same start: peak RSS (VmHWM 3 s after applied, max of the runs); RSS then",
    backend,
    result: `${mib(big.peak)}; ${mib(big.rss)}`,
    goal: "peak ≤ 150 MiB",
    quoted: { v1: "—", v2: "—", before: "154 MB (lite-mode) / 293 MB (without)" },
    verdict: verdict(big.peak <= 150),
    command: `${agentCommand(nftArgs)} (${what})`,
    rerun: rerunArgs("start", backend),
  });
  return rows;
}

function peerRerun(peers: Peers): string[] {
  return Object.entries(peers).filter(([, path]) => path).map(([name, path]) =>
    `--peer=${name}=${path}`
  );
}
