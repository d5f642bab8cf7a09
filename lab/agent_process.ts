/**
 * Runs the real entry point exactly as `deno task start` does (the same
 * command line, read from deno.json, so the production permission set is what
 * is tested) inside a network namespace, with a config directory bind-mounted
 * at /etc/config in a private mount namespace. /etc itself is an overlay there,
 * so creating the mount point never touches the host.
 *
 * @module
 */

import { fail } from "node:assert/strict";
import denoConfig from "../deno.json" with { type: "json" };
import type { NetNs } from "./netns.ts";
import { backendOfDir, pathFor } from "./netns.ts";

export const repoRoot = new URL("../", import.meta.url).pathname.replace(/\/$/, "");

/** `deno task start` as argv, e.g. ["deno", "run", "--no-prompt", "-P=agent", "main.ts"]. */
export const startCommand: readonly string[] = denoConfig.tasks.start.split(/\s+/);

export interface AgentOptions {
  readonly ns: NetNs;
  /**
   * Directory of iptables* names for the backend (see backendBin), first in
   * PATH. Unless `args` set `--iptables-mode`, the agent is given the
   * backend the directory names (its marker file).
   */
  readonly binDir: string;
  /** Host directory mounted at /etc/config; undefined leaves /etc/config absent. */
  readonly configDir?: string;
  readonly args: readonly string[];
  /** Extra environment; the agent otherwise gets only PATH, HOME and DENO_DIR. */
  readonly env?: Record<string, string>;
  /** Commands run (in the private mount namespace) before the agent starts. */
  readonly setup?: string;
  /** Run the agent as PID 1 of a new PID namespace. */
  readonly pid1?: boolean;
  /** A command prefix for the agent itself, e.g. `setpriv` dropping capabilities. */
  readonly wrap?: readonly string[];
  /**
   * Another agent's command instead of `deno task start` (the benchmark's Go peers); then no
   * `--iptables-mode` is added, and `processName` names the process `agentPid` looks for.
   */
  readonly command?: readonly string[];
  /** The agent process's name (`/proc/PID/comm`); "deno" unless `command` says otherwise. */
  readonly processName?: string;
}

export interface AgentResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Fails unless the agent exited with `code`, showing what it printed. */
export function assertExit(result: AgentResult, code: number, what: string): void {
  if (result.code !== code) {
    fail(
      `${what}: expected exit ${code}, got ${result.code}\n` +
        `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`,
    );
  }
}

const setupScript = `
set -e
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$IMT_WORK/upper,workdir=$IMT_WORK/work" /etc
mkdir -p /etc/config
if [ -n "$IMT_CONFIG" ]; then mount --bind "$IMT_CONFIG" /etc/config; else rmdir /etc/config; fi
eval "$IMT_SETUP"
cd "$IMT_REPO"
exec ip netns exec "$IMT_NS" $IMT_PID1 "$@"
`;

export class AgentProcess {
  readonly #child: Deno.ChildProcess;
  #stdout = "";
  #stderr = "";
  readonly #done: Promise<AgentResult>;

  readonly #processName: string;

  private constructor(child: Deno.ChildProcess, work: string, processName: string) {
    this.#child = child;
    this.#processName = processName;
    const collect = async (stream: ReadableStream<Uint8Array>, append: (text: string) => void) => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) append(decoder.decode(chunk, { stream: true }));
    };
    const out = collect(child.stdout, (text) => this.#stdout += text);
    const err = collect(child.stderr, (text) => this.#stderr += text);
    this.#done = (async () => {
      const status = await child.status;
      await Promise.all([out, err]);
      await Deno.remove(work, { recursive: true }).catch(() => {});
      return { code: status.code, stdout: this.#stdout, stderr: this.#stderr };
    })();
  }

  static async start(options: AgentOptions): Promise<AgentProcess> {
    const work = await Deno.makeTempDir({ prefix: "imt-agent-" });
    await Deno.mkdir(`${work}/upper`);
    await Deno.mkdir(`${work}/work`);
    const env: Record<string, string> = {
      PATH: pathFor(options.binDir),
      HOME: Deno.env.get("HOME") ?? "/root",
      IMT_WORK: work,
      IMT_CONFIG: options.configDir ?? "",
      IMT_SETUP: options.setup ?? "",
      IMT_REPO: repoRoot,
      IMT_NS: options.ns.name,
      IMT_PID1: options.pid1 ? "unshare --pid --fork --mount-proc" : "",
      ...options.env,
    };
    // First, so that a test's own flags (even a bad one) come after it unchanged.
    const backend = await backendOfDir(options.binDir);
    const args = backend && !options.command &&
        !options.args.some((arg) => /^--?iptables-mode(=|$)/.test(arg))
      ? [`--iptables-mode=${backend}`, ...options.args]
      : [...options.args];
    const denoDir = Deno.env.get("DENO_DIR");
    if (denoDir) env.DENO_DIR = denoDir;
    const child = new Deno.Command("unshare", {
      args: [
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        setupScript,
        "sh",
        ...(options.wrap ?? []),
        ...(options.command ?? startCommand),
        ...args,
      ],
      clearEnv: true,
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    return new AgentProcess(child, work, options.processName ?? "deno");
  }

  /** Runs to completion, killing the agent after `timeoutMs`. */
  static async run(options: AgentOptions, timeoutMs = 30_000): Promise<AgentResult> {
    const agent = await AgentProcess.start(options);
    const timer = setTimeout(() => agent.kill("SIGKILL"), timeoutMs);
    try {
      return await agent.wait(Infinity);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The pid of the process started (the unshare wrapper around the agent). */
  get pid(): number {
    return this.#child.pid;
  }

  get stdout(): string {
    return this.#stdout;
  }

  get stderr(): string {
    return this.#stderr;
  }

  /**
   * Resolves with the agent's exit. Bounded: an agent still running after
   * `timeoutMs` is killed and the wait fails saying so, so a test cannot hang
   * on an agent that ignores its signal. `Infinity` waits without bound (for
   * trackers that race it against their own deadline).
   */
  async wait(timeoutMs = 60_000): Promise<AgentResult> {
    if (!Number.isFinite(timeoutMs)) return await this.#done;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.kill("SIGKILL");
        reject(
          new Error(
            `the agent did not exit within ${timeoutMs} ms (killed); stderr so far:\n${this.#stderr}`,
          ),
        );
      }, timeoutMs);
    });
    try {
      return await Promise.race([this.#done, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  kill(signal: Deno.Signal = "SIGTERM"): void {
    try {
      this.#child.kill(signal);
    } catch {
      // Already exited.
    }
  }

  /**
   * Sends a signal to the agent itself (the deno process), not to the unshare
   * wrapper (which, as `unshare --fork`, blocks SIGTERM and SIGINT) nor to a
   * child of the agent (an iptables tool, a process started by `setup`).
   */
  async signalAgent(signal: Deno.Signal): Promise<void> {
    const pid = await findAgentPid(this.#child.pid, this.#processName);
    if (pid === undefined) {
      this.kill(signal);
      return;
    }
    try {
      Deno.kill(pid, signal);
    } catch {
      // Exited in between.
    }
  }

  /** Waits until stderr matches, or throws with what was logged so far. */
  async waitForLog(pattern: RegExp, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(this.#stderr)) {
      if (Date.now() > deadline) {
        throw new Error(`timed out waiting for ${pattern}; stderr so far:\n${this.#stderr}`);
      }
      const exited = await Promise.race([
        this.#done.then(() => true),
        new Promise<false>((resolve) => setTimeout(() => resolve(false), 25)),
      ]);
      if (exited && !pattern.test(this.#stderr)) {
        throw new Error(`agent exited before logging ${pattern}; stderr:\n${this.#stderr}`);
      }
    }
  }

  /** The agent's own (deno) process id, once the wrappers have exec'd into it. */
  async agentPid(timeoutMs = 10_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const pid = await findAgentPid(this.#child.pid, this.#processName);
      if (pid !== undefined) return pid;
      if (Date.now() > deadline) {
        throw new Error(`no deno process under pid ${this.#child.pid} after ${timeoutMs} ms`);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

/** Every process's children, from /proc. */
async function processChildren(): Promise<Map<number, number[]>> {
  const children = new Map<number, number[]>();
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const stat = await Deno.readTextFile(`/proc/${entry.name}/stat`).catch(() => "");
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (!Number.isInteger(ppid)) continue;
    children.set(ppid, [...(children.get(ppid) ?? []), Number(entry.name)]);
  }
  return children;
}

/**
 * The command lines (argv) of the processes below the agent's own deno
 * process right now: the iptables or nft call it is waiting for, if any
 * (and whatever `setup` left running in the background).
 */
export async function agentChildren(agent: AgentProcess): Promise<string[][]> {
  const pid = await findAgentPid(agent.pid);
  if (pid === undefined) return [];
  const children = await processChildren();
  const found: string[][] = [];
  const queue = [...(children.get(pid) ?? [])];
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    const cmdline = await Deno.readTextFile(`/proc/${next}/cmdline`).catch(() => "");
    if (cmdline !== "") found.push(cmdline.replace(/\0$/, "").split("\0"));
    queue.push(...(children.get(next) ?? []));
  }
  return found;
}

/**
 * The deno process in the tree rooted at `root`, nearest the root first: the
 * wrapper chain (unshare, sh, ip netns exec) execs into deno, except
 * `unshare --fork`, whose child it is.
 */
async function findAgentPid(root: number, name = "deno"): Promise<number | undefined> {
  const children = await processChildren();
  const queue = [root];
  for (let pid = queue.shift(); pid !== undefined; pid = queue.shift()) {
    const comm = await Deno.readTextFile(`/proc/${pid}/comm`).catch(() => "");
    if (comm.trim() === name) return pid;
    queue.push(...(children.get(pid) ?? []));
  }
  return undefined;
}
