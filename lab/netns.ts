/**
 * Throwaway network namespaces and iptables backends for tests. Every
 * namespace is created here with a unique name and deleted by `dispose`;
 * the host's own tables are never touched.
 *
 * @module
 */

import { allIptablesTools } from "../lib/iptables/mode.ts";
import type { Backend } from "./host.ts";

export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * How long one helper command (ip, iptables-save, nft, ...) may take: far
 * above what any takes, a bound so a stuck tool fails the test naming itself.
 */
export const commandTimeoutMs = 60_000;

export async function run(
  command: string,
  args: readonly string[],
  options: { stdin?: string; env?: Record<string, string>; check?: boolean } = {},
): Promise<CommandResult> {
  const signal = AbortSignal.timeout(commandTimeoutMs);
  const child = new Deno.Command(command, {
    args: [...args],
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env: options.env,
    signal,
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const output = await child.output();
  if (signal.aborted) {
    throw new Error(`${command} ${args.join(" ")} did not finish within ${commandTimeoutMs} ms`);
  }
  const decoder = new TextDecoder();
  const result = {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
  if (options.check && result.code !== 0) {
    throw new Error(`${command} ${args.join(" ")} exited ${result.code}: ${result.stderr}`);
  }
  return result;
}

let counter = 0;

export class NetNs {
  private constructor(readonly name: string) {}

  /** Names are short (kernel limit) and unique per process and call. */
  static async create(label: string): Promise<NetNs> {
    const name = `imt-${label}-${Deno.pid}-${counter++}`.slice(0, 40);
    await run("ip", ["netns", "add", name], { check: true });
    const ns = new NetNs(name);
    await ns.exec(["ip", "link", "set", "lo", "up"], { check: true });
    return ns;
  }

  exec(
    argv: readonly string[],
    options: { stdin?: string; env?: Record<string, string>; check?: boolean } = {},
  ): Promise<CommandResult> {
    return run("ip", ["netns", "exec", this.name, ...argv], options);
  }

  async dispose(): Promise<void> {
    await run("ip", ["netns", "del", this.name]);
  }
}

/** Every iptables tool the agent may run: the backends' own names, never the plain ones. */
export const toolNames: readonly string[] = allIptablesTools;

/** The plain names, which the tests' own reads and writes use (never the agent). */
export const plainToolNames = [
  "iptables",
  "iptables-save",
  "iptables-restore",
  "ip6tables",
  "ip6tables-save",
  "ip6tables-restore",
] as const;

/** What every iptables* name of a backend runs; it dispatches on the name it is called by. */
export function multiBinary(backend: Backend): string {
  return backend === "nft" ? "/usr/sbin/xtables-nft-multi" : "/usr/sbin/xtables-legacy-multi";
}

/** The backend a tool name belongs to: `iptables-legacy-restore` is legacy's. */
function backendOfTool(name: string): Backend | undefined {
  if (/-nft(-|$)/.test(name)) return "nft";
  if (/-legacy(-|$)/.test(name)) return "legacy";
  return undefined;
}

/**
 * The file in a tool directory that says which backend its plain names run.
 * AgentProcess passes it to the agent as `--iptables-mode` (unless the test
 * sets the flag): a fresh namespace carries no kubelet hint to detect.
 */
export const backendMarker = ".iptables-backend";

/** The backend a tool directory was made for, if it says. */
export async function backendOfDir(dir: string): Promise<Backend | undefined> {
  try {
    const text = (await Deno.readTextFile(`${dir}/${backendMarker}`)).trim();
    return text === "nft" || text === "legacy" ? text : undefined;
  } catch {
    return undefined;
  }
}

async function link(target: string, path: string) {
  await Deno.remove(path).catch(() => {});
  await Deno.symlink(target, path);
}

/**
 * A directory to put first in PATH: the plain iptables* names run `backend`
 * (for the test's own reads and writes), each backend's own names run that
 * backend (what the agent runs), and the marker names `backend`.
 */
export async function backendBin(backend: Backend, root: string): Promise<string> {
  const dir = `${root}/bin-${backend}`;
  await Deno.mkdir(dir, { recursive: true });
  for (const name of plainToolNames) await link(multiBinary(backend), `${dir}/${name}`);
  for (const name of toolNames) await link(multiBinary(backendOfTool(name)!), `${dir}/${name}`);
  await Deno.writeTextFile(`${dir}/${backendMarker}`, `${backend}\n`);
  return dir;
}

/** What the harness itself runs to start the agent (agent_process.ts), besides iptables. */
const harnessTools = ["sh", "unshare", "mount", "mkdir", "rmdir", "ip", "deno", "setpriv"];

async function which(name: string): Promise<string> {
  const output = await new Deno.Command("sh", { args: ["-c", `command -v ${name}`] }).output();
  const path = new TextDecoder().decode(output.stdout).trim();
  if (!output.success || path === "") throw new Error(`${name} is not installed`);
  return path;
}

/**
 * A directory to use as the whole PATH: the harness's own tools plus only
 * the listed iptables tools of the backend, so every other one is missing.
 */
export async function restrictedPath(
  backend: Backend,
  root: string,
  iptablesTools: readonly string[],
): Promise<string> {
  const dir = `${root}/path-${iptablesTools.length}`;
  await Deno.mkdir(dir, { recursive: true });
  for (const tool of harnessTools) await Deno.symlink(await which(tool), `${dir}/${tool}`);
  for (const tool of iptablesTools) {
    await Deno.symlink(multiBinary(backendOfTool(tool) ?? backend), `${dir}/${tool}`);
  }
  await Deno.writeTextFile(`${dir}/${backendMarker}`, `${backend}\n`);
  return dir;
}

/** PATH for a backend: its shim directory first, then the usual system directories. */
export function pathFor(binDir: string): string {
  return `${binDir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`;
}

/** `iptables-save -t nat` (or ip6tables) inside the namespace with the given backend. */
export async function saveNat(
  ns: NetNs,
  binDir: string,
  family: "ipv4" | "ipv6" = "ipv4",
): Promise<string> {
  const tool = family === "ipv4" ? "iptables-save" : "ip6tables-save";
  const result = await ns.exec([`${binDir}/${tool}`, "-t", "nat"], { check: true });
  return result.stdout;
}

/** The rule lines of a save, without comments and counters that vary from run to run. */
export function ruleLines(save: string): string[] {
  return save.split("\n").filter((line) => line.startsWith("-A ") || line.startsWith(":"))
    .map((line) => line.replace(/ \[\d+:\d+\]$/, ""));
}

export async function restoreNat(
  ns: NetNs,
  binDir: string,
  payload: string,
  family: "ipv4" | "ipv6" = "ipv4",
): Promise<void> {
  const tool = family === "ipv4" ? "iptables-restore" : "ip6tables-restore";
  await ns.exec([`${binDir}/${tool}`, "--noflush"], { stdin: payload, check: true });
}
