/**
 * Spawn → rules in the kernel: with 4 CIDRs (goal 5) and with 10,000
 * (goal 3), each run in a fresh namespace.
 *
 * @module
 */

import type { Backend } from "../lab/host.ts";
import { ConfigMapDir } from "../lab/config_map.ts";
import {
  agentCommand,
  chainRules,
  configYaml,
  distinctCidrs,
  fmt,
  fourCidrs,
  median,
  parseLog,
  progress,
  type Resources,
  rulesWritten,
  waitForLine,
} from "./harness.ts";
import { type Options, rerunArgs } from "./options.ts";
import { type Row, verdict } from "./report.ts";
import { agentBin } from "./tools.ts";
import { quoted } from "./upstream.ts";

interface Spawned {
  /** Spawn → the `rules written (ipv4)` line's timestamp. */
  readonly totalMs: number;
  /** Spawn → the first log line (deno start-up and module loading). */
  readonly bootMs: number;
}

async function spawnToRules(
  res: Resources,
  backend: Backend,
  cidrs: readonly string[],
  runs: number,
): Promise<{ samples: Spawned[]; args: string[] }> {
  const root = await res.tempDir("imb-start-");
  const bin = await agentBin(backend, root);
  const limit = cidrs.length > 64 ? cidrs.length : undefined;
  const dir = await ConfigMapDir.create(`${root}/config`, {
    "ip-masq-agent": configYaml(cidrs, limit),
  });
  const args = [`--iptables-mode=${backend}`];
  const samples: Spawned[] = [];
  for (let run = 0; run <= runs; run++) {
    const ns = await res.namespace("start");
    const spawnedAt = Date.now();
    const agent = await res.agent({ ns, binDir: bin, configDir: dir.path, args });
    // The line's own timestamp is the measure, so polling the collected stderr slowly is fine
    // and leaves the CPUs to the agent.
    const seen = await waitForLine(agent, rulesWritten("ipv4"), { timeoutMs: 60_000, pollMs: 10 });
    if (!seen) throw new Error(`no "rules written" line; stderr:\n${agent.stderr}`);
    const first = parseLog(agent.stderr)[0];
    const rules = (await chainRules(ns, bin, backend)).length;
    await res.stopAgent(agent);
    await res.disposeNamespace(ns);
    if (rules !== cidrs.length + 2) {
      throw new Error(
        `${rules} rules in the chain after "rules written", expected ` +
          `${cidrs.length + 2}`,
      );
    }
    const sample = { totalMs: seen.line.at - spawnedAt, bootMs: (first?.at ?? NaN) - spawnedAt };
    progress(
      `   run ${run}${run === 0 ? " (warm-up, not counted)" : ""}: ${sample.totalMs} ms ` +
        `(first log line at ${sample.bootMs} ms), ${rules} rules`,
    );
    if (run > 0) samples.push(sample);
  }
  return { samples, args };
}

export async function startupRows(
  res: Resources,
  backend: Backend,
  options: Options,
): Promise<Row[]> {
  const rows: Row[] = [];
  const cases = [
    { cidrs: [...fourCidrs], runs: options.startupRuns, goalMs: 100, group: "startup" as const },
    {
      cidrs: distinctCidrs(options.cidrs),
      runs: options.applyRuns,
      goalMs: 500,
      group: "apply" as const,
    },
  ];
  for (const { cidrs, runs, goalMs, group } of cases) {
    progress(`startup, ${backend}: spawn → ${fmt(cidrs.length)} CIDRs applied, 1 + ${runs} runs`);
    const { samples, args } = await spawnToRules(res, backend, cidrs, runs);
    const total = median(samples.map((sample) => sample.totalMs));
    rows.push({
      group,
      measurement:
        `spawn → ${group === "startup" ? "first rules" : `${fmt(cidrs.length)} CIDRs`} ` +
        `applied (\`rules written\` timestamp), median of ${samples.length} (runs: ` +
        `${samples.map((sample) => sample.totalMs).join(", ")} ms); of which spawn → first log ` +
        `line (deno boot, module load): ${fmt(median(samples.map((sample) => sample.bootMs)))} ms`,
      backend,
      result: `${fmt(total)} ms`,
      goal: `≤ ${goalMs} ms`,
      quoted: group === "startup" ? quoted.firstRules : quoted.apply10k,
      verdict: verdict(total <= goalMs),
      command: `${agentCommand(args)} (empty nat table, ${fmt(cidrs.length)} CIDRs)`,
      rerun: rerunArgs("startup", backend),
    });
  }
  return rows;
}
