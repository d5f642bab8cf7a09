/**
 * The benchmark's command line: `--name=value` options, each with a default
 * that keeps a full run within a few minutes on two CPUs.
 *
 * @module
 */

import type { Backend } from "../lab/host.ts";

/** What `--only` can name; all of them run by default, in this order. */
export const sections = [
  "node",
  "resync10k",
  "probe",
  "startup",
  "memory",
  "shipped",
  "latency",
  "nft",
  "start",
] as const;

export type Section = typeof sections[number];

export const sectionHelp: Readonly<Record<Section, string>> = {
  node: "steady resync on an empty table and on the kube-proxy table (goal 1; RSS rows of goal 4)",
  resync10k: "steady resync at 10,000 CIDRs (goal 2; the 10,000-CIDR RSS row of goal 4)",
  probe: "one --check readiness probe on the kube-proxy table (goal 5)",
  startup: "spawn → first rules with 4 CIDRs (goal 5) and with 10,000 (goal 3)",
  memory: "RSS with 4 / 10,000 CIDRs, growth over --reconciles SIGHUPs, the deno floor (goal 4)",
  shipped: "RSS as the shipped DaemonSet runs it (--iptables-mode=auto), kube-proxy vs empty node",
  latency: "config change → rules applied, kept from issue 3",
  nft: "issue 11: both dataplanes at 1,000-100,000 CIDRs, and the first-packet cost",
  start: "issue 18: spawn → applied and RSS at rest as the manifest runs us, beside --peer agents",
};

export interface Options {
  readonly backends: readonly Backend[];
  readonly only: ReadonlySet<Section>;
  /** Timer resyncs measured per steady run. */
  readonly resyncs: number;
  /** Service ports in the kube-proxy table. */
  readonly services: number;
  /** CIDRs of the "10,000 CIDRs" runs. */
  readonly cidrs: number;
  readonly probeRuns: number;
  /** Runs of spawn → first rules with 4 CIDRs. */
  readonly startupRuns: number;
  /** Runs of spawn → 10,000 CIDRs applied. */
  readonly applyRuns: number;
  readonly reconciles: number;
  readonly swaps: number;
  /** Go agents to measure beside ours (`--peer=v1=PATH --peer=v2=PATH`). */
  readonly peers: { readonly v1?: string; readonly v2?: string };
}

export const usage = `deno task bench [--name=value ...]   (as root)

  --backends=nft,legacy   iptables backends to measure
  --only=${sections.join(",")}
${sections.map((name) => `      ${name.padEnd(10)} ${sectionHelp[name]}`).join("\n")}
  --resyncs=15            timer resyncs per steady run
  --services=5000         service ports in the kube-proxy table (about 10.3 nat rules each)
  --cidrs=10000           CIDRs of the "10,000 CIDRs" runs
  --probe-runs=3          --check probes (after one warm-up)
  --startup-runs=5        spawn → first rules runs with 4 CIDRs (after one warm-up)
  --apply-runs=3          spawn → 10,000 CIDRs applied runs (after one warm-up)
  --reconciles=1000       SIGHUP-driven reconciles of the memory-growth run
  --swaps=50              config changes of the latency run
  --peer=v1=PATH --peer=v2=PATH
                          Go agents (e.g. ../shared/peers/build.sh's run-v1, run-v2) measured
                          beside ours in the start section (also: --peer v1=PATH)
`;

export function parseOptions(allArgs: readonly string[]): Options {
  const values = new Map<string, string>();
  const peers: { v1?: string; v2?: string } = {};
  const args: string[] = [];
  for (let i = 0; i < allArgs.length; i++) {
    const arg = allArgs[i];
    const peer = arg === "--peer" ? allArgs[++i] : /^--peer=(.*)$/.exec(arg)?.[1];
    if (peer === undefined) {
      args.push(arg);
      continue;
    }
    const match = /^(v1|v2)=(.+)$/.exec(peer);
    if (!match) throw new Error(`--peer takes v1=PATH or v2=PATH, got ${peer}`);
    peers[match[1] as "v1" | "v2"] = match[2];
  }
  for (const arg of args) {
    const match = /^--([a-z0-9-]+)=(.*)$/.exec(arg);
    if (!match) throw new Error(`unknown argument ${arg} (options take the form --name=value)`);
    values.set(match[1], match[2]);
  }
  const take = (name: string, fallback: string) => {
    const value = values.get(name) ?? fallback;
    values.delete(name);
    return value;
  };
  const int = (name: string, fallback: number) => {
    const value = Number(take(name, String(fallback)));
    if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a positive int`);
    return value;
  };
  const backends = take("backends", "nft,legacy").split(",").map((name) => {
    if (name !== "nft" && name !== "legacy") throw new Error(`unknown backend ${name}`);
    return name as Backend;
  });
  const only = new Set(
    take("only", sections.join(",")).split(",").map((name) => {
      if (!(sections as readonly string[]).includes(name)) {
        throw new Error(`unknown section ${name} (one of ${sections.join(", ")})`);
      }
      return name as Section;
    }),
  );
  const options: Options = {
    backends,
    only,
    resyncs: int("resyncs", 15),
    services: int("services", 5000),
    cidrs: int("cidrs", 10_000),
    probeRuns: int("probe-runs", 3),
    startupRuns: int("startup-runs", 5),
    applyRuns: int("apply-runs", 3),
    reconciles: int("reconciles", 1000),
    swaps: int("swaps", 50),
    peers,
  };
  if (values.size > 0) throw new Error(`unknown option --${[...values.keys()][0]}`);
  return options;
}

/** The options that reproduce one section for one backend, for the report's rerun column. */
export function rerunArgs(section: Section, backend: Backend | "—", extra: string[] = []): string {
  return [`--only=${section}`, ...(backend === "—" ? [] : [`--backends=${backend}`]), ...extra]
    .join(" ");
}
