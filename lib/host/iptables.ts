/**
 * Running `iptables-save` and `iptables-restore` (and their ip6tables twins).
 * This is the only module that starts processes. The reconcile loop sees the
 * small `NatTableClient` interface, so tests use a faithful in-memory fake.
 *
 * @module
 */

import type { Family } from "../core/cidr.ts";
import { SandboxDeniedError } from "../core/errors.ts";

export interface NatTableClient {
  readonly family: Family;
  /** `iptables-save -t nat` output. */
  save(signal?: AbortSignal): Promise<string>;
  /** One atomic `iptables-restore --noflush` transaction. */
  restore(payload: string, signal?: AbortSignal): Promise<void>;
}

export const tools = {
  ipv4: { main: "iptables", save: "iptables-save", restore: "iptables-restore" },
  ipv6: { main: "ip6tables", save: "ip6tables-save", restore: "ip6tables-restore" },
} as const;

/** Wait up to 5 s for the xtables lock, polling every 100 ms, as upstream does. */
export const restoreArgs = ["--noflush", "-w", "5", "-W", "100000"] as const;

export type IptablesFailure = "lock" | "missing" | "failed";

export class IptablesError extends Error {
  override readonly name = "IptablesError";
  constructor(
    message: string,
    readonly failure: IptablesFailure,
    readonly command: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/**
 * The xtables lock is someone else's critical section: waiting it out is always right. Only the
 * message identifies it: exit status 4 also means other resource problems (iptables-nft uses it
 * for "CHAIN_DEL failed (Device or resource busy)"), which must not be retried forever.
 */
export function isLockContention(stderr: string): boolean {
  return /xtables lock/i.test(stderr);
}

interface RunResult {
  readonly stdout: string;
}

async function run(
  command: string,
  args: readonly string[],
  stdin: string | undefined,
  signal: AbortSignal | undefined,
): Promise<RunResult> {
  const commandLine = [command, ...args].join(" ");
  const startFailure = (error: unknown) => {
    if (error instanceof Deno.errors.NotCapable) {
      return new SandboxDeniedError("run", command, error);
    }
    if (error instanceof Deno.errors.NotFound) {
      return new IptablesError(
        `${command} not found: install iptables (the agent runs ${command} from PATH)`,
        "missing",
        commandLine,
        { cause: error },
      );
    }
    return new IptablesError(`cannot start ${commandLine}`, "failed", commandLine, {
      cause: error,
    });
  };
  const spec = new Deno.Command(command, {
    args: [...args],
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    signal,
  });
  let output: Deno.CommandOutput;
  if (stdin === undefined) {
    // Command.output() reads the pipes directly. spawn().output() goes through ReadableStreams
    // that keep native memory per launch (denoland/deno#33334): RSS grew ~0.1 MB per
    // iptables-save, without bound over resyncs (docs/benchmarks.md). Saves, the steady-state
    // launches, take this path; only a restore needs stdin and a spawned child.
    try {
      output = await spec.output();
    } catch (error) {
      throw startFailure(error);
    }
  } else {
    let child: Deno.ChildProcess;
    try {
      child = spec.spawn();
    } catch (error) {
      throw startFailure(error);
    }
    const writer = child.stdin.getWriter();
    try {
      await writer.write(new TextEncoder().encode(stdin));
      await writer.close();
    } catch {
      // The process exited before reading everything; its exit status says why.
    }
    output = await child.output();
  }
  const decoder = new TextDecoder();
  const stderr = decoder.decode(output.stderr).trim();
  if (signal?.aborted) {
    throw new IptablesError(`${command} aborted`, "failed", commandLine, { cause: signal.reason });
  }
  if (!output.success) {
    const failure = isLockContention(stderr) ? "lock" : "failed";
    throw new IptablesError(
      `${commandLine} exited with status ${output.code}: ${stderr || "(no output)"}`,
      failure,
      commandLine,
    );
  }
  return { stdout: decoder.decode(output.stdout) };
}

export function natTableClient(family: Family): NatTableClient {
  const names = tools[family];
  return {
    family,
    save: async (signal) => (await run(names.save, ["-t", "nat"], undefined, signal)).stdout,
    restore: async (payload, signal) => {
      await run(names.restore, restoreArgs, payload, signal);
    },
  };
}

export interface IptablesVersion {
  /** The first line of `iptables --version`, e.g. `iptables v1.8.9 (nf_tables)`. */
  readonly description: string;
  readonly randomFullySupported: boolean;
}

/** `--random-fully` arrived in iptables 1.6.2; older binaries reject the whole restore. */
export async function probeVersion(family: Family): Promise<IptablesVersion> {
  const { stdout } = await run(tools[family].main, ["--version"], undefined, undefined);
  return parseVersion(stdout);
}

export function parseVersion(output: string): IptablesVersion {
  const description = output.trim().split("\n")[0] ?? "";
  const match = /v(\d+)\.(\d+)\.(\d+)/.exec(description);
  const version = match ? match.slice(1).map(Number) : [0, 0, 0];
  const [major, minor, patch] = version;
  const randomFullySupported = major > 1 ||
    (major === 1 && (minor > 6 || (minor === 6 && patch >= 2)));
  return { description, randomFullySupported };
}
