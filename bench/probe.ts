/**
 * Goal 5's readiness probe: one `--check` on the kube-proxy node, as kubelet
 * runs it every 30 s: wall time and peak RSS, under GNU time.
 *
 * @module
 */

import type { Backend } from "../lab/host.ts";
import { ConfigMapDir } from "../lab/config_map.ts";
import { sleep } from "../lab/wait.ts";
import {
  agentCommand,
  configYaml,
  fmt,
  fourCidrs,
  median,
  parseLog,
  progress,
  type Resources,
} from "./harness.ts";
import { describeNode, kubeProxyNode, loadKubeProxyTable } from "./node.ts";
import { type Options, rerunArgs } from "./options.ts";
import { type Row, verdict } from "./report.ts";
import { agentBin } from "./tools.ts";
import { quoted } from "./upstream.ts";

const gnuTime = "/usr/bin/time";

interface ProbeRun {
  /** GNU time's %e: the deno process, fork to exit. */
  readonly wallMs: number;
  /** GNU time's %M: max of deno's and any one waited-for child's ru_maxrss. */
  readonly treePeakMiB: number;
  /** deno's own VmHWM, polled; undefined when it exited before the bench found it. */
  readonly denoPeakMiB?: number;
  /** The bench's spawn → exit, wrappers (`unshare`, mounts, `ip netns exec`) included. */
  readonly benchWallMs: number;
}

/** Last VmHWM of `pid` seen before it exits (VmHWM only grows), polled every 2 ms. */
async function watchPeak(pid: Promise<number | undefined>, exited: () => boolean) {
  const id = await pid;
  if (id === undefined) return undefined;
  let peak: number | undefined;
  while (!exited()) {
    const status = await Deno.readTextFile(`/proc/${id}/status`).catch(() => "");
    const kb = /^VmHWM:\s+(\d+) kB/m.exec(status)?.[1];
    if (kb === undefined) break;
    peak = Number(kb) / 1024;
    await sleep(2);
  }
  return peak;
}

export async function probeRows(
  res: Resources,
  backend: Backend,
  options: Options,
): Promise<Row[]> {
  const table = kubeProxyNode(options.services);
  progress(`probe, ${backend}: --check on the ${describeNode("kube-proxy", table)}`);
  const root = await res.tempDir("imb-probe-");
  const bin = await agentBin(backend, root);
  const ns = await res.namespace("probe");
  await loadKubeProxyTable(ns, bin, backend, table);
  const dir = await ConfigMapDir.create(`${root}/config`, {
    "ip-masq-agent": configYaml(fourCidrs),
  });
  const mode = `--iptables-mode=${backend}`;
  const applied = await res.agent({ ns, binDir: bin, configDir: dir.path, args: [mode, "--once"] });
  const once = await applied.wait();
  await res.stopAgent(applied);
  if (once.code !== 0) throw new Error(`--once exited ${once.code}:\n${once.stderr}`);

  const args = [mode, "--check"];
  const runs: ProbeRun[] = [];
  for (let run = 0; run <= options.probeRuns; run++) {
    const timeFile = `${root}/time-${run}`;
    const spawnedAt = performance.now();
    const agent = await res.agent({
      ns,
      binDir: bin,
      configDir: dir.path,
      args,
      wrap: [gnuTime, "-o", timeFile, "-f", "%e %M"],
    });
    let exited = false;
    const done = agent.wait().then((result) => {
      exited = true;
      return result;
    });
    const pid = Promise.race([agent.agentPid(), done.then(() => undefined)])
      .catch(() => undefined);
    const [denoPeakMiB, result] = await Promise.all([watchPeak(pid, () => exited), done]);
    const benchWallMs = performance.now() - spawnedAt;
    await res.stopAgent(agent);
    if (result.code !== 0) {
      throw new Error(`--check exited ${result.code}:\n${result.stdout}\n${result.stderr}`);
    }
    const [seconds, kb] = (await Deno.readTextFile(timeFile)).trim().split(/\s+/).map(Number);
    const sample = { wallMs: seconds * 1000, treePeakMiB: kb / 1024, denoPeakMiB, benchWallMs };
    progress(
      `   run ${run}${run === 0 ? " (warm-up, not counted)" : ""}: ${fmt(sample.wallMs)} ms ` +
        `(bench ${fmt(benchWallMs)} ms), peak ${fmt(sample.treePeakMiB, 1)} MiB ` +
        `(deno ${fmt(denoPeakMiB ?? NaN, 1)} MiB)`,
    );
    if (run > 0) runs.push(sample);
  }

  // kubelet's KUBE-IPTABLES-HINT in this backend's mangle table is what auto mode should find.
  const autoArgs = ["--iptables-mode=auto", "--once"];
  const auto = await res.agent({ ns, binDir: bin, configDir: dir.path, args: autoArgs });
  const autoResult = await auto.wait();
  await res.stopAgent(auto);
  await res.disposeNamespace(ns);
  const chosen = /iptables mode (\S+) \((.*?)\)( |$)/m.exec(autoResult.stderr);
  const autoWrote = parseLog(autoResult.stderr).some((line) => /^rules written/.test(line.message));
  progress(`   --iptables-mode=auto chose ${chosen?.[1] ?? "?"} (${chosen?.[2] ?? "?"})`);

  const wall = median(runs.map((run) => run.wallMs));
  const benchWall = median(runs.map((run) => run.benchWallMs));
  const treePeak = Math.max(...runs.map((run) => run.treePeakMiB));
  const denoPeaks = runs.flatMap((run) => run.denoPeakMiB === undefined ? [] : [run.denoPeakMiB]);
  const command = `${gnuTime} -f "%e %M" ${agentCommand(args)} (${
    describeNode("kube-proxy", table)
  }, our rules applied by a --once first)`;
  const rerun = rerunArgs("probe", backend);
  return [
    {
      group: "startup",
      measurement: `one \`--check\` probe on the kube-proxy node: wall, median of ` +
        `${runs.length} (runs: ${runs.map((run) => fmt(run.wallMs)).join(", ")} ms; ` +
        `spawn → exit as the bench sees it, with the namespace wrappers: ${fmt(benchWall)} ms)`,
      backend,
      result: `${fmt(wall)} ms`,
      goal: "≤ 100 ms",
      quoted: quoted.probe[backend],
      verdict: verdict(wall <= 100),
      command,
      rerun,
    },
    {
      group: "ours",
      measurement: "`--iptables-mode=auto` on the kube-proxy node (kubelet's KUBE-IPTABLES-HINT " +
        "in this backend's mangle table), after the rules were applied in this backend",
      backend,
      result: chosen
        ? `chose ${chosen[1]} (${chosen[2]}); ${autoWrote ? "wrote rules" : "wrote nothing"}`
        : `exit ${autoResult.code}, no "iptables mode" in the log`,
      goal: `chooses ${backend}, writes nothing`,
      quoted: quoted.none,
      verdict: verdict(chosen?.[1] === backend && !autoWrote && autoResult.code === 0),
      command: `${agentCommand(autoArgs)} (${describeNode("kube-proxy", table)})`,
      rerun,
    },
    {
      group: "startup",
      measurement: "the same probe: peak RSS, max of the runs: GNU time's %M (the larger of " +
        "deno's and any one iptables tool's); deno's own VmHWM",
      backend,
      result: `${fmt(treePeak, 1)} MiB; deno ${
        denoPeaks.length > 0 ? `${fmt(Math.max(...denoPeaks), 1)} MiB` : "n/a"
      }`,
      goal: "— (reported: sizes the DaemonSet limit)",
      quoted: quoted.probePeak[backend],
      verdict: "info",
      command,
      rerun,
    },
  ];
}
