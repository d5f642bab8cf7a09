/**
 * The harness of the end-to-end packet tests: each case gets its own pod,
 * node and ext namespaces (lab/topology.ts), a backend's tools and a config
 * directory, and runs once per dataplane and iptables backend it is given.
 * The agent is the real entry point (lab/agent_process.ts).
 *
 * @module
 */

import { deepStrictEqual, equal } from "node:assert/strict";
import { AgentProcess, type AgentResult } from "./agent_process.ts";
import type { Dataplane } from "./dataplanes.ts";
import { type Backend, backends, netnsTest } from "./host.ts";
import { backendBin } from "./netns.ts";
import { type Seen, type Topology, withTopology } from "./topology.ts";

/** What one case runs with. */
export interface E2eEnv {
  readonly topology: Topology;
  readonly dataplane: Dataplane;
  /** The iptables backend's tools, first in the agent's PATH. */
  readonly binDir: string;
  /** Host directory for config files; mounted at /etc/config when a run asks for it. */
  readonly configDir: string;
}

/** One dataplane and backend to run a case on, and its label in the test name. */
export interface E2eRun {
  readonly dataplane: Dataplane;
  readonly backend: Backend;
  readonly label: string;
}

/** The iptables dataplane on each backend. */
export const iptablesRuns: readonly E2eRun[] = backends.map((backend) => ({
  dataplane: "iptables",
  backend,
  label: backend,
}));

/** Those, and the nftables dataplane (which needs no second backend). */
export const allRuns: readonly E2eRun[] = [
  ...iptablesRuns,
  { dataplane: "nftables", backend: "nft", label: "nftables" },
];

/** One test per run, each with its own namespaces, config directory and tool shims. */
export function e2eTest(
  name: string,
  fn: (env: E2eEnv) => Promise<void>,
  runs: readonly E2eRun[] = allRuns,
): void {
  for (const { dataplane, backend, label } of runs) {
    netnsTest(`${label}: ${name}`, async () => {
      const root = await Deno.makeTempDir({ prefix: "imt-e2e-" });
      try {
        const binDir = await backendBin(backend, root);
        const configDir = `${root}/config`;
        await Deno.mkdir(configDir);
        await withTopology((topology) => fn({ topology, dataplane, binDir, configDir }));
      } finally {
        await Deno.remove(root, { recursive: true }).catch(() => {});
      }
    });
  }
}

/** An agent run's exit and output, for assertion messages. */
export function describeResult(result: AgentResult): string {
  return `exit ${result.code}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
}

/**
 * Runs the agent to completion in the node namespace with the env's
 * dataplane, and asserts its exit code. `config: false` leaves /etc/config
 * absent (no file at all); otherwise the config directory is mounted.
 */
export async function runAgent(
  env: E2eEnv,
  args: readonly string[],
  options: { config?: boolean; code?: number } = {},
): Promise<AgentResult> {
  const result = await AgentProcess.run({
    ns: env.topology.node,
    binDir: env.binDir,
    configDir: options.config === false ? undefined : env.configDir,
    args: [`--dataplane=${env.dataplane}`, ...args],
  });
  equal(result.code, options.code ?? 0, `agent ${args.join(" ")}: ${describeResult(result)}`);
  return result;
}

/** Writes one config file (default name `ip-masq-agent`) into the env's config directory. */
export async function writeConfig(
  env: E2eEnv,
  text: string,
  name = "ip-masq-agent",
): Promise<void> {
  await Deno.writeTextFile(`${env.configDir}/${name}`, text);
}

/** Connects from the pod to every destination named in `expected` and compares what ext saw. */
export async function expectSeen(
  env: E2eEnv,
  expected: Record<string, Seen>,
  why: string,
): Promise<void> {
  const seen = await env.topology.sourcesSeen(Object.keys(expected));
  deepStrictEqual(seen, expected, `${why} (node = masqueraded, pod = not)`);
}
