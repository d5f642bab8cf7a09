/**
 * Kept from issue 3: config change → rules applied, over kubelet-style
 * atomic `..data` swaps.
 *
 * @module
 */

import type { Backend } from "../lab/host.ts";
import { ConfigMapDir } from "../lab/config_map.ts";
import { sleep } from "../lab/wait.ts";
import {
  agentCommand,
  chainRules,
  configYaml,
  distinctCidrs,
  fmt,
  fourCidrs,
  percentile,
  progress,
  type Resources,
  rulesWritten,
  startAgent,
  waitForLine,
} from "./harness.ts";
import { type Options, rerunArgs } from "./options.ts";
import { type Row, verdict } from "./report.ts";
import { agentBin } from "./tools.ts";
import { quoted } from "./upstream.ts";

export async function latencyRows(
  res: Resources,
  backend: Backend,
  options: Options,
): Promise<Row[]> {
  const { swaps } = options;
  progress(`latency, ${backend}: ${swaps} atomic ..data swaps`);
  const root = await res.tempDir("imb-swap-");
  const bin = await agentBin(backend, root);
  const ns = await res.namespace("swap");
  // 10.0.0.0/8 stays out: the swaps add /24s inside it, which would then be contained.
  const base = fourCidrs.filter((cidr) => !cidr.startsWith("10."));
  const dir = await ConfigMapDir.create(`${root}/config`, { "ip-masq-agent": configYaml(base) });
  const args = [`--iptables-mode=${backend}`, "--resync-interval=3600"];
  const { agent } = await startAgent(
    res,
    { ns, binDir: bin, configDir: dir.path, args },
    rulesWritten("ipv4"),
  );
  await sleep(300);
  const hasCidr = async (cidr: string) =>
    (await chainRules(ns, bin, backend)).some((line) => line.includes(` -d ${cidr} `));
  const latencies: number[] = [];
  let fallbacks = 0;
  let misses = 0;
  for (let i = 0; i < swaps; i++) {
    const cidr = distinctCidrs(1, i)[0];
    const fromOffset = agent.stderr.lastIndexOf("\n") + 1;
    const swappedAt = await dir.update({
      "ip-masq-agent": configYaml([...base, ...distinctCidrs(i + 1)]),
    });
    const seen = await waitForLine(agent, rulesWritten("ipv4"), {
      fromOffset,
      timeoutMs: 5000,
      pollMs: 2,
    });
    if (seen && await hasCidr(cidr)) {
      latencies.push(seen.line.at - swappedAt);
    } else {
      // No log line (or it did not carry this CIDR): poll the chain every ~5 ms up to 10 s.
      fallbacks++;
      let visibleAt: number | undefined;
      while (Date.now() - swappedAt < 10_000) {
        if (await hasCidr(cidr)) {
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
  const [p50, p99, max] = [50, 99, 100].map((p) => percentile(latencies, p));
  progress(
    `   p50 ${p50} ms, p99 ${p99} ms, max ${max} ms; fallbacks ${fallbacks}, misses ${misses}`,
  );
  const extra = [
    fallbacks > 0 ? `${fallbacks} measured by polling the chain` : "",
    misses > 0 ? `${misses} never visible within 10 s` : "",
  ].filter(Boolean).join("; ");
  return [{
    group: "kept",
    measurement: `config change → rules applied (${swaps} \`..data\` swaps): p50 / p99 / max`,
    backend,
    result: `${fmt(p50)} / ${fmt(p99)} / ${fmt(max)} ms${extra ? ` (${extra})` : ""}`,
    goal: "p99 < 1 s",
    quoted: quoted.configChange,
    verdict: verdict(p99 < 1000 && misses === 0),
    command: `${agentCommand(args)} (empty nat table)`,
    rerun: rerunArgs("latency", backend),
  }];
}
