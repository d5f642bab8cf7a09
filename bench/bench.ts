/**
 * `deno task bench`: issue 9's goals measured where users run the agent: as
 * root, in throwaway network namespaces against real iptables (nft and
 * legacy), on an empty nat table and on a kube-proxy node of 5,000 services,
 * with the real entry point (`deno task start`'s command line and
 * permissions, `--iptables-mode=<backend>`) and a kubelet-style config
 * directory. Prints a Markdown report on stdout (progress on stderr); see
 * `options.ts` for the options (`--only=` runs a subset) and `report.ts` for
 * the methods.
 *
 * @module
 */

import { type Backend, netnsSkipReason } from "../lab/host.ts";
import { repoRoot } from "../lab/agent_process.ts";
import { progress, Resources } from "./harness.ts";
import { latencyRows } from "./latency.ts";
import { nftRows } from "./nftables.ts";
import { floorRow, memoryRows } from "./memory.ts";
import { parseOptions, type Section, sections, usage } from "./options.ts";
import { probeRows } from "./probe.ts";
import { loadAverage, machine, report, revision, type Row } from "./report.ts";
import { shippedRows } from "./shipped.ts";
import { startupRows } from "./startup.ts";
import { sideBySideRows } from "./side_by_side.ts";
import { nodeRows, resync10kRows, SteadyRuns } from "./steady.ts";

async function main(): Promise<number> {
  if (Deno.args.includes("--help")) {
    console.log(usage);
    return 0;
  }
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
    progress("the benchmark ran longer than 30 minutes: cleaning up and exiting");
    res.releaseAll().finally(() => Deno.exit(3));
  }, 30 * 60_000);
  try {
    const env = await machine(await res.tempDir("imb-ver-"), options.backends);
    const load = await loadAverage();
    progress(`${env.iptables}; ${env.deno}; load ${load}`);
    const runs = new SteadyRuns(res, options);
    const rows: Row[] = [];
    const measure: Record<Section, (backend: Backend) => Promise<Row[]>> = {
      node: (backend) => nodeRows(runs, backend),
      resync10k: (backend) => resync10kRows(runs, backend),
      probe: (backend) => probeRows(res, backend, options),
      startup: (backend) => startupRows(res, backend, options),
      memory: (backend) => memoryRows(res, runs, backend, options),
      shipped: (backend) => shippedRows(res, backend, options),
      latency: (backend) => latencyRows(res, backend, options),
      nft: (backend) => nftRows(res, backend, options),
      start: (backend) => sideBySideRows(res, backend, options, options.peers),
    };
    for (const section of sections.filter((name) => options.only.has(name))) {
      for (const backend of options.backends) rows.push(...await measure[section](backend));
      if (section === "memory") rows.push(await floorRow(res));
    }
    const command = [`cd ${repoRoot} && deno task bench`, ...Deno.args].join(" ");
    console.log(report(rows, {
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
