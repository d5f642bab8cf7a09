/**
 * Tools for the fault tests: PATH directories with iptables tools replaced,
 * another writer hammering the nat table, and waiting for or stopping agents.
 * Everything started here is bounded in time and has a way to be stopped.
 *
 * @module
 */

import type { AgentProcess } from "./agent_process.ts";
import type { Backend } from "./host.ts";
import { backendBin, type NetNs } from "./netns.ts";

/**
 * A backend directory (as `backendBin`) in which the named tools are shell
 * scripts instead, e.g. an `iptables-restore` that always fails.
 */
export async function shimmedBin(
  backend: Backend,
  root: string,
  scripts: Record<string, string>,
): Promise<string> {
  const dir = await backendBin(backend, `${root}/shim`);
  for (const [name, body] of Object.entries(scripts)) {
    await Deno.remove(`${dir}/${name}`).catch(() => {});
    await Deno.writeTextFile(`${dir}/${name}`, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
    await Deno.chmod(`${dir}/${name}`, 0o755);
  }
  return dir;
}

/** Resolves with the agent's exit, or undefined if it is still running after `ms`. */
export async function exitWithin(agent: AgentProcess, ms: number) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((resolve) =>
    timer = setTimeout(() => resolve(undefined), ms)
  );
  try {
    return await Promise.race([agent.wait(Infinity), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Kills agents still running (also a PID 1 agent behind its unshare) and waits for them. */
export async function stopAgents(agents: readonly AgentProcess[]): Promise<void> {
  for (const agent of agents) {
    if (await exitWithin(agent, 0) !== undefined) continue;
    await agent.signalAgent("SIGKILL");
    agent.kill("SIGKILL");
    await exitWithin(agent, 5_000);
  }
}

/** The save without its `# Generated`/`# Completed` lines, which carry a timestamp. */
export function withoutTimestamps(save: string): string {
  return save.split("\n").filter((line) => !line.startsWith("#")).join("\n");
}

export interface HammerResult {
  readonly ok: number;
  readonly failed: number;
  /** The iteration of the last successful write; its rule is what HAMMER must hold at the end. */
  readonly lastOk: number;
  readonly stderr: string;
}

export const hammerChain = "HAMMER";
export const hammerJump =
  `-A POSTROUTING -s 10.99.0.0/16 -m comment --comment "hammer jump" -j ${hammerChain}`;

/** The HAMMER chain's content after iteration `n`, as iptables-save prints it. */
export function hammerRules(n: number): string[] {
  return [
    `-A ${hammerChain} -d 203.0.113.${n % 250}/32 -m comment --comment "hammer ${n}" -j RETURN`,
    `-A ${hammerChain} -j ACCEPT`,
  ];
}

/**
 * Another program writing the nat table as fast as it can until stopped:
 * each transaction refills its own chain and deletes and re-appends its own
 * POSTROUTING rule (as kube-proxy and CNI plugins do), with `-w` like any
 * well-behaved writer. After each transaction it writes how many it has made
 * to a progress file, so a test paces itself by the writes, not by the clock.
 */
export class NatHammer {
  readonly #child: Deno.ChildProcess;
  readonly #result: Promise<HammerResult>;

  private constructor(child: Deno.ChildProcess, readonly dir: string) {
    this.#child = child;
    this.#result = (async () => {
      const output = await child.output();
      const decoder = new TextDecoder();
      const [ok, failed, lastOk] = decoder.decode(output.stdout).trim().split(/\s+/).map(Number);
      return { ok, failed, lastOk, stderr: decoder.decode(output.stderr) };
    })();
  }

  /** The chain and jump must exist before (`initialPayload`), as the loop deletes the jump first. */
  static initialPayload(): string {
    return `*nat\n:${hammerChain} - [0:0]\n${hammerRules(0).join("\n")}\n${hammerJump}\nCOMMIT\n`;
  }

  /** Starts writing; `dir` (an existing directory) holds the progress and stop files. */
  static start(ns: NetNs, binDir: string, dir: string): NatHammer {
    const jumpSpec = hammerJump.slice("-A POSTROUTING ".length);
    const [first, second] = hammerRules(0).map((rule) =>
      rule.replace("203.0.113.0/32", "203.0.113.%d/32").replace('"hammer 0"', '"hammer %d"')
    );
    const script = `
ok=0; failed=0; i=0; last=0
while [ ! -e "${dir}/stop" ]; do
  i=$((i + 1))
  if printf '*nat\\n:${hammerChain} - [0:0]\\n${first}\\n${second}\\n-D POSTROUTING ${jumpSpec}\\n-A POSTROUTING ${jumpSpec}\\nCOMMIT\\n' $((i % 250)) $i |
    "${binDir}/iptables-restore" --noflush -w 5; then
    ok=$((ok + 1)); last=$i
  else
    failed=$((failed + 1))
  fi
  echo "$i" > "${dir}/progress.tmp" && mv "${dir}/progress.tmp" "${dir}/progress"
done
echo "$ok $failed $last"
`;
    const child = new Deno.Command("ip", {
      args: ["netns", "exec", ns.name, "sh", "-c", script],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    return new NatHammer(child, dir);
  }

  /** How many transactions it has attempted so far. */
  async progress(): Promise<number> {
    return Number(await Deno.readTextFile(`${this.dir}/progress`).catch(() => "0")) || 0;
  }

  /** Asks it to stop after the transaction in progress; `result()` then reports. */
  async finish(): Promise<void> {
    await Deno.writeTextFile(`${this.dir}/stop`, "");
  }

  result(): Promise<HammerResult> {
    return this.#result;
  }

  /** Stops the writer early (cleanup); `result()` then reports what it did. */
  stop(): void {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Already finished.
    }
  }
}
