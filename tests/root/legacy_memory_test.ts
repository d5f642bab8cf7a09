/**
 * Issue 15 item 7: on a legacy node beside kube-proxy's 50,000 nat rules the
 * agent, run as shipped (`--iptables-mode=auto`), costs what it costs on an
 * empty node. Its start-up detection used to keep a dump of every legacy
 * table (RSS 78 MiB against 51); it now streams the dump and keeps a summary.
 * Also: the detection still never names a legacy table it was not shown
 * loaded (that would create the table in the node's namespace).
 */

import { equal, ok } from "node:assert/strict";
import { netnsTest } from "../../lab/host.ts";
import { withLab } from "../../lab/lab.ts";
import { kubeProxyTable } from "../../bench/kube_proxy_table.ts";

const table = kubeProxyTable({ services: 5000 });

async function peakRss(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1]) / 1024;
}

/** The agent's peak RSS (MiB) once it has applied its rules, in auto mode, on this node. */
async function peakAsShipped(
  kubeProxy: boolean,
): Promise<{ peak: number; log: string; calls: string[] }> {
  return await withLab("legacy", kubeProxy ? "legmem-kp" : "legmem-empty", async (lab) => {
    const hintOnly = "*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n";
    await lab.ns.exec([`${lab.bin}/iptables-restore`], {
      stdin: kubeProxy ? table.restoreInput : hintOnly,
      check: true,
    });
    await lab.writeConfig("nonMasqueradeCIDRs: [10.0.0.0/8]\n");
    const agent = await lab.start(["--iptables-mode=auto", "--resync-interval=3600"]);
    try {
      await agent.waitForLog(/rules written \(ipv4\)/, 60_000);
      const peak = await peakRss(await agent.agentPid());
      return { peak, log: agent.stderr, calls: await lab.tools.calls() };
    } finally {
      agent.kill("SIGTERM");
      await agent.wait();
    }
  });
}

netnsTest("a legacy kube-proxy node costs the agent no more memory than an empty one", async () => {
  const empty = await peakAsShipped(false);
  const busy = await peakAsShipped(true);
  ok(
    /iptables mode legacy \(kubelet's hint chain in the legacy ipv4 mangle table\)/.test(busy.log),
  );
  // Legacy tables other than nat (ours to read) are never asked for by name: that creates them.
  equal(
    busy.calls.filter((call) => /^ip6?tables-legacy .*-t (mangle|filter|raw)/.test(call)).length,
    0,
  );
  ok(
    busy.peak <= empty.peak + 5,
    `peak RSS ${busy.peak.toFixed(1)} MiB beside ${table.natRules} legacy nat rules, ` +
      `${empty.peak.toFixed(1)} MiB on an empty legacy node: more than 5 MiB apart`,
  );
});
