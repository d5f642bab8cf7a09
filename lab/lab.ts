/**
 * One throwaway test bench: a fresh network namespace, a backend's iptables
 * tools wrapped in a call-counting ToolLog, and a host config directory that
 * the real entry point sees at /etc/config. `withLab` deletes the namespace
 * and the files in `finally`, whatever the test does.
 *
 * @module
 */

import { type AgentOptions, AgentProcess, type AgentResult } from "./agent_process.ts";
import { iptablesTools } from "../lib/iptables/mode.ts";
import type { Backend } from "./host.ts";
import { backendBin, type CommandResult, NetNs, saveNat } from "./netns.ts";
import { ToolLog } from "./tool_log.ts";

export type Family = "ipv4" | "ipv6";
export const families: readonly Family[] = ["ipv4", "ipv6"];

type AgentExtras = Partial<Omit<AgentOptions, "ns" | "args">>;

export class Lab {
  constructor(
    readonly backend: Backend,
    readonly ns: NetNs,
    readonly root: string,
    /** The backend's plain tools, for the test's own reads and writes (never counted). */
    readonly bin: string,
    /** The counting wrappers the agent runs. */
    readonly tools: ToolLog,
    /** Mounted at /etc/config for the agent. */
    readonly configDir: string,
  ) {}

  async writeConfig(text: string, name = "ip-masq-agent"): Promise<void> {
    await Deno.writeTextFile(`${this.configDir}/${name}`, text);
  }

  /** Runs the real entry point to completion with the counting tools first in PATH. */
  agent(args: readonly string[], extras: AgentExtras = {}): Promise<AgentResult> {
    return AgentProcess.run(this.#options(args, extras), 60_000);
  }

  start(args: readonly string[], extras: AgentExtras = {}): Promise<AgentProcess> {
    return AgentProcess.start(this.#options(args, extras));
  }

  #options(args: readonly string[], extras: AgentExtras) {
    return { ns: this.ns, binDir: this.tools.binDir, configDir: this.configDir, ...extras, args };
  }

  /** The name of the agent's tool for this lab's backend: `iptables-nft-restore`, ... */
  agentTool(family: Family, tool: "main" | "restore"): string {
    return iptablesTools(this.backend, family)[tool];
  }

  /**
   * What the agent launched since the last reset, per family: `-t nat -S`
   * listings (a reconcile lists POSTROUTING and its chain) and restores, of
   * this lab's backend only.
   */
  async launches(): Promise<Record<string, number>> {
    const calls = await this.tools.calls();
    const count = (prefix: string) => calls.filter((call) => call.startsWith(prefix)).length;
    return {
      "iptables -S": count(`${this.agentTool("ipv4", "main")} -w 5 -t nat -S`),
      "ip6tables -S": count(`${this.agentTool("ipv6", "main")} -w 5 -t nat -S`),
      "iptables-restore": count(`${this.agentTool("ipv4", "restore")} `),
      "ip6tables-restore": count(`${this.agentTool("ipv6", "restore")} `),
    };
  }

  /** `iptables`/`ip6tables` with the given arguments in the namespace; throws on failure. */
  ipt(family: Family, args: readonly string[]): Promise<CommandResult> {
    const tool = family === "ipv4" ? "iptables" : "ip6tables";
    return this.ns.exec([`${this.bin}/${tool}`, "-w", ...args], { check: true });
  }

  /** `iptables-save -t nat` in the namespace. */
  save(family: Family): Promise<string> {
    return saveNat(this.ns, this.bin, family);
  }

  /** `iptables-save` of every table of the family. */
  async saveAll(family: Family): Promise<string> {
    const tool = family === "ipv4" ? "iptables-save" : "ip6tables-save";
    return (await this.ns.exec([`${this.bin}/${tool}`], { check: true })).stdout;
  }

  /** `iptables-save -c -t nat`: rule lines carry their packet and byte counters. */
  async saveWithCounters(family: Family): Promise<string> {
    const tool = family === "ipv4" ? "iptables-save" : "ip6tables-save";
    return (await this.ns.exec([`${this.bin}/${tool}`, "-c", "-t", "nat"], { check: true }))
      .stdout;
  }

  /** `iptables-restore --noflush` of a payload (any tables). */
  async restore(family: Family, payload: string): Promise<void> {
    const tool = family === "ipv4" ? "iptables-restore" : "ip6tables-restore";
    await this.ns.exec([`${this.bin}/${tool}`, "-w", "5", "--noflush"], {
      stdin: payload,
      check: true,
    });
  }
}

/** Runs `fn` with a fresh lab for `backend`, removing the namespace and files afterwards. */
export async function withLab<T>(
  backend: Backend,
  label: string,
  fn: (lab: Lab) => Promise<T>,
): Promise<T> {
  const root = await Deno.makeTempDir({ prefix: `imt-${label}-` });
  let ns: NetNs | undefined;
  try {
    ns = await NetNs.create(label);
    const bin = await backendBin(backend, root);
    const tools = await ToolLog.create(bin, root);
    const configDir = `${root}/config`;
    await Deno.mkdir(configDir);
    return await fn(new Lab(backend, ns, root, bin, tools, configDir));
  } finally {
    await ns?.dispose();
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}
