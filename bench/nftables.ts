/**
 * Issue 11's rows (`--only=nft`): the nftables dataplane against the
 * iptables one, in throwaway namespaces, with the real entry point.
 *
 * - Apply from empty and one steady resync (`--once` on an applied node) for
 *   1,000, 10,000 and 100,000 CIDRs, each dataplane; for nftables also the
 *   `nft -f` transaction alone, timed and counted in bytes by a wrapper
 *   first in PATH, and a one-CIDR change (elements and bytes written).
 * - First-packet cost: new TCP connections per second from the pod
 *   namespace through the node to a destination that matches no CIDR (the
 *   whole chain walked), iptables chain vs nftables set at 10,000 CIDRs and
 *   the nftables set at 10 CIDRs, in the same run.
 *
 * @module
 */

import type { Backend } from "../lab/host.ts";
import { AgentProcess, type AgentResult } from "../lab/agent_process.ts";
import { backendBin, type NetNs } from "../lab/netns.ts";
import { destinations, target, withTopology } from "../lab/topology.ts";
import { fmt, median, progress, type Resources } from "./harness.ts";
import type { Options } from "./options.ts";
import { rerunArgs } from "./options.ts";
import { quoted } from "./upstream.ts";
import type { Row } from "./report.ts";

const sizes = [1_000, 10_000, 100_000] as const;
/** The agent reads at most 1 MiB per file: big configs are split. */
const cidrsPerFile = 20_000;

/** `n` non-adjacent IPv4 /28s in 10.0.0.0/8 (every other block): one set element each. */
export function spacedCidrs(n: number): string[] {
  if (n > 1 << 19) throw new Error("at most 524288 spaced /28s in 10.0.0.0/8");
  return Array.from({ length: n }, (_, i) => {
    const address = (10 << 24) + i * 32;
    return `${address >>> 24}.${(address >>> 16) & 255}.${(address >>> 8) & 255}.${
      address & 255
    }/28`;
  });
}

async function writeConfig(dir: string, cidrs: readonly string[]): Promise<void> {
  for await (const entry of Deno.readDir(dir)) await Deno.remove(`${dir}/${entry.name}`);
  for (let i = 0; i * cidrsPerFile < Math.max(cidrs.length, 1); i++) {
    const part = cidrs.slice(i * cidrsPerFile, (i + 1) * cidrsPerFile);
    const text = ["cidrLimit: 100000", "nonMasqueradeCIDRs:", ...part.map((c) => `  - ${c}`)];
    await Deno.writeTextFile(
      `${dir}/ip-masq-agent-${String(i).padStart(2, "0")}`,
      `${text.join("\n")}\n`,
    );
  }
}

/**
 * An `nft` first in PATH that records, per `nft -f -`, its bytes and
 * milliseconds, then runs the real one.
 */
async function nftRecorder(binDir: string, log: string): Promise<void> {
  const script = `#!/bin/sh
if [ "$1" = "-f" ]; then
  tmp=$(mktemp)
  cat > "$tmp"
  start=$(date +%s%N)
  /usr/sbin/nft "$@" < "$tmp"
  status=$?
  end=$(date +%s%N)
  printf '%s %s %s\\n' "$(wc -c < "$tmp")" "$(( (end - start) / 1000000 ))" "$(grep -c '^add element' "$tmp")" >> '${log}'
  rm -f "$tmp"
  exit $status
fi
if [ "$1" = "-j" ] && [ "$2" = "list" ]; then
  start=$(date +%s%N)
  /usr/sbin/nft "$@"
  status=$?
  end=$(date +%s%N)
  printf 'list %s\\n' "$(( (end - start) / 1000000 ))" >> '${log}.list'
  exit $status
fi
exec /usr/sbin/nft "$@"
`;
  await Deno.writeTextFile(`${binDir}/nft`, script, { mode: 0o755 });
  await Deno.chmod(`${binDir}/nft`, 0o755);
}

interface Transaction {
  readonly bytes: number;
  readonly ms: number;
  readonly addLines: number;
}

async function transactions(log: string): Promise<Transaction[]> {
  const text = await Deno.readTextFile(log).catch(() => "");
  return text.trim().split("\n").filter((line) => line !== "").map((line) => {
    const [bytes, ms, addLines] = line.split(" ").map(Number);
    return { bytes, ms, addLines };
  });
}

async function once(
  ns: NetNs,
  binDir: string,
  configDir: string,
  args: readonly string[],
): Promise<{ result: AgentResult; ms: number }> {
  const started = performance.now();
  const result = await AgentProcess.run(
    { ns, binDir, configDir, args: ["--once", ...args] },
    300_000,
  );
  const ms = performance.now() - started;
  if (result.code !== 0) {
    throw new Error(`agent ${args.join(" ")} exited ${result.code}:\n${result.stderr}`);
  }
  return { result, ms };
}

function row(
  measurement: string,
  backend: Backend | "—",
  result: string,
  goal: string,
  pass: boolean | undefined,
  command: string,
): Row {
  return {
    group: "apply",
    measurement,
    backend,
    result,
    goal,
    quoted: quoted.none,
    verdict: pass === undefined ? "info" : pass ? "PASS" : "FAIL",
    command,
    rerun: rerunArgs("nft", backend),
  };
}

/** The apply and resync rows of one dataplane and size. */
async function applyRows(
  res: Resources,
  backend: Backend,
  dataplane: "iptables" | "nftables",
  size: number,
): Promise<Row[]> {
  const root = await res.tempDir("imb-nft-");
  const ns = await res.namespace("nftb");
  try {
    const binDir = await backendBin(backend, root);
    const log = `${root}/nft.log`;
    await nftRecorder(binDir, log);
    const configDir = `${root}/config`;
    await Deno.mkdir(configDir);
    const cidrs = spacedCidrs(size);
    await writeConfig(configDir, cidrs);
    const args = [`--dataplane=${dataplane}`];
    progress(`nft: ${dataplane} (${backend}) ${fmt(size)} CIDRs: apply from empty`);
    const applied = await once(ns, binDir, configDir, args);
    const first = (await transactions(log)).at(-1);
    const resyncs: number[] = [];
    await Deno.writeTextFile(`${log}.list`, "");
    for (let i = 0; i < 3; i++) resyncs.push((await once(ns, binDir, configDir, args)).ms);
    const lists = (await Deno.readTextFile(`${log}.list`)).trim().split("\n")
      .filter((line) => line.startsWith("list ")).map((line) => Number(line.slice(5)));
    const wrote = (await transactions(log)).length - (dataplane === "nftables" ? 1 : 0);
    const label = dataplane === "nftables" ? "nftables" : `iptables (${backend})`;
    const command = `deno task start --once --dataplane=${dataplane} (${fmt(size)} CIDRs)`;
    const rows = [
      row(
        `${label}, ${fmt(size)} CIDRs: --once apply from empty, wall (process start to exit)`,
        backend,
        `${fmt(applied.ms)} ms`,
        dataplane === "nftables" && size === 100_000 ? "< 1 s (the transaction)" : "",
        undefined,
        command,
      ),
      row(
        `${label}, ${fmt(size)} CIDRs: --once on the applied node (a fresh process parses the ` +
          `config again), median of 3` +
          (dataplane === "nftables" ? "; the running agent's resync is the one read" : ""),
        backend,
        `${fmt(median(resyncs))} ms, ${dataplane === "nftables" ? wrote : "—"} writes` +
          (dataplane === "nftables" ? `; \`nft -j list table\` ${fmt(median(lists))} ms` : ""),
        "no write",
        dataplane === "nftables" ? wrote === 0 : undefined,
        command,
      ),
    ];
    if (dataplane === "nftables" && first) {
      rows.push(row(
        `nftables, ${fmt(size)} CIDRs: the \`nft -f\` transaction from empty`,
        backend,
        `${fmt(first.ms)} ms, ${fmt(first.bytes)} bytes`,
        size === 100_000 ? "< 1 s" : "",
        size === 100_000 ? first.ms < 1000 : undefined,
        command,
      ));
      await writeConfig(configDir, [...cidrs, "198.18.0.0/15"]);
      await once(ns, binDir, configDir, args);
      const change = (await transactions(log)).at(-1)!;
      rows.push(row(
        `nftables, ${fmt(size)} CIDRs: one CIDR added: what the transaction writes`,
        backend,
        `${change.addLines} add element line, ${fmt(change.bytes)} bytes, ${fmt(change.ms)} ms`,
        "one element",
        change.addLines === 1 && change.bytes < 200,
        command,
      ));
    }
    return rows;
  } finally {
    await res.disposeNamespace(ns);
  }
}

/** New connections per second, pod → node → a masqueraded destination, measured by difference. */
async function connectionRate(
  connect: (count: number) => Promise<number>,
  count: number,
): Promise<number> {
  const base = await connect(10);
  const full = await connect(count + 10);
  return count / ((full - base) / 1000);
}

const rounds = 5;

async function firstPacketRows(backend: Backend, connections: number): Promise<Row[]> {
  const rates: Record<string, number> = {};
  const root = await Deno.makeTempDir({ prefix: "imb-nft-fp-" });
  try {
    const binDir = await backendBin(backend, root);
    const configDir = `${root}/config`;
    await Deno.mkdir(configDir);
    await withTopology(async (topology) => {
      // Every connection leaves a TIME_WAIT tuple in conntrack for two minutes, and each new
      // masqueraded one must find a free source port among them: thousands per run would slow
      // later runs down by that search, not by the rules. So few connections per run (all
      // runs together use a small part of the port space), interleaved rounds with the order
      // rotated, and the median of each.
      const connect = async (count: number) => {
        const started = performance.now();
        const results = await topology.connect(Array(count).fill(target(destinations.testNet2)), {
          timeoutMs: 5000,
        });
        const failed = results.filter((result) => !result.answer).length;
        if (failed > 0) throw new Error(`${failed} of ${count} connections failed`);
        return performance.now() - started;
      };
      const runs = [
        { key: "nftables, 10 CIDRs", dataplane: "nftables", size: 10 },
        { key: "nftables, 10,000 CIDRs", dataplane: "nftables", size: 10_000 },
        { key: `iptables (${backend}), 10,000 CIDRs`, dataplane: "iptables", size: 10_000 },
      ];
      // Interleaved rounds, the median of each: the machine is shared, and its load drifts.
      const samples: Record<string, number[]> = {};
      for (let round = 0; round < rounds; round++) {
        for (
          const run of [...runs.slice(round % runs.length), ...runs.slice(0, round % runs.length)]
        ) {
          progress(`nft: first-packet cost, ${run.key}, round ${round + 1} of ${rounds}`);
          await writeConfig(configDir, spacedCidrs(run.size));
          // Switching dataplanes removes the other's rules in the same run (tested elsewhere).
          await once(topology.node, binDir, configDir, [`--dataplane=${run.dataplane}`]);
          (samples[run.key] ??= []).push(await connectionRate(connect, connections));
        }
      }
      for (const [key, values] of Object.entries(samples)) rates[key] = median(values);
    });
  } finally {
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
  const small = rates["nftables, 10 CIDRs"];
  const big = rates["nftables, 10,000 CIDRs"];
  const ratio = big / small;
  const command = `${connections} sequential connections pod → node → 198.51.100.10 ` +
    `(no CIDR matches), median of ${rounds} interleaved rounds`;
  return [
    ...Object.entries(rates).map(([key, rate]) =>
      row(
        `first-packet cost: new TCP connections/s, ${key}`,
        backend,
        `${fmt(rate)}/s`,
        "",
        undefined,
        command,
      )
    ),
    row(
      "first-packet cost: nftables at 10,000 CIDRs vs at 10 CIDRs",
      backend,
      `${fmt(ratio * 100, 1)} % of the 10-CIDR rate (iptables at 10,000: ${
        fmt((rates[`iptables (${backend}), 10,000 CIDRs`] / small) * 100, 1)
      } %)`,
      "≥ 90 %",
      ratio >= 0.9,
      command,
    ),
  ];
}

/** Every row of the section for one iptables backend (the nftables rows with the first one). */
export async function nftRows(
  res: Resources,
  backend: Backend,
  options: Options,
): Promise<Row[]> {
  const rows: Row[] = [];
  const withNftables = backend === options.backends[0];
  for (const size of sizes) {
    rows.push(...await applyRows(res, backend, "iptables", size));
    if (withNftables) rows.push(...await applyRows(res, backend, "nftables", size));
  }
  rows.push(...await firstPacketRows(backend, 600));
  return rows;
}
