/**
 * The one seam under every program the agent runs (`Deno.Command`, start failures typed).
 *
 * @module
 */

import { SandboxDeniedError } from "./errors.ts";

/** What a finished process left: its exit code and what it printed. */
export interface ExecResult {
  /** The exit status. */
  readonly code: number;
  /** Everything it printed on stdout, decoded as UTF-8. */
  readonly stdout: string;
  /** Everything it printed on stderr, decoded as UTF-8. */
  readonly stderr: string;
}

/** How to run one program: what to feed its stdin, and when to give up on it. */
export interface ExecOptions {
  /** Written to the program's stdin, which is then closed; without it stdin is /dev/null. */
  readonly stdin?: string;
  /** Aborting kills the program; `exec` then rejects with an {@link ExecAbortedError}. */
  readonly signal?: AbortSignal;
}

/**
 * Runs `command` from PATH, resolving whatever its exit code; rejects only when it could not start
 * ({@link ProgramMissingError}, {@link SandboxDeniedError}, {@link ExecStartError}) or was aborted.
 */
export type Exec = (
  command: string,
  args: readonly string[],
  options?: ExecOptions,
) => Promise<ExecResult>;

/** What a scanned program left: its exit code, its stderr, and whether the scan stopped it. */
export interface ScanResult extends Omit<ExecResult, "stdout"> {
  /** True when `onText` had enough and the program got SIGTERM (`code` is what it made of that). */
  readonly stopped: boolean;
}

/**
 * {@link Exec} handing stdout to `onText` chunk by chunk, for megabytes of output (legacy tables
 * beside kube-proxy's) the caller only sums up; `onText` returning true stops it (SIGTERM).
 */
export type ScanExec = (
  command: string,
  args: readonly string[],
  onText: (text: string) => boolean,
) => Promise<ScanResult>;

/** A {@link ScanExec} over an {@link Exec}: the whole stdout as one chunk (fakes in tests). */
export function scanViaExec(exec: Exec): ScanExec {
  return async (command, args, onText) => {
    const result = await exec(command, args);
    return { code: result.code, stderr: result.stderr, stopped: onText(result.stdout) };
  };
}

/** The program is not installed (not found in PATH). */
export class ProgramMissingError extends Error {
  /** Names the class in printed chains of causes. */
  override readonly name = "ProgramMissingError";
  /** Names the missing program, as the agent looked it up in PATH. */
  constructor(readonly command: string, options?: ErrorOptions) {
    super(`${command} not found in PATH`, options);
  }
}

/** The program exists but could not be started, for a reason other than the sandbox. */
export class ExecStartError extends Error {
  /** Names the class in printed chains of causes. */
  override readonly name = "ExecStartError";
  /** Names the command line that could not start. */
  constructor(readonly commandLine: string, options?: ErrorOptions) {
    super(`cannot start ${commandLine}`, options);
  }
}

/** The caller's signal aborted while the program ran. */
export class ExecAbortedError extends Error {
  /** Names the class in printed chains of causes. */
  override readonly name = "ExecAbortedError";
  /** Names the command line that was aborted. */
  constructor(readonly commandLine: string, options?: ErrorOptions) {
    super(`${commandLine} aborted`, options);
  }
}

/** Why `command` did not start, as the error {@link Exec} rejects with. */
function startError(command: string, args: readonly string[], cause: unknown): Error {
  if (cause instanceof Deno.errors.NotCapable) return new SandboxDeniedError("run", command, cause);
  if (cause instanceof Deno.errors.NotFound) return new ProgramMissingError(command, { cause });
  return new ExecStartError([command, ...args].join(" "), { cause });
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** {@link Exec} on `Deno.Command`: the agent's only way to start a process. */
export async function denoExec(
  command: string,
  args: readonly string[],
  { stdin, signal }: ExecOptions = {},
): Promise<ExecResult> {
  const spec = new Deno.Command(command, {
    args: [...args],
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    signal,
  });
  let output: Deno.CommandOutput;
  try {
    // Command.output() reads the pipes directly; spawn().output() goes through ReadableStreams that
    // keep native memory per launch (denoland/deno#33334: RSS grew ~0.1 MB per read, unbounded over
    // resyncs; docs/benchmarks.md). Reads, the steady state, take this path; a restore needs stdin.
    if (stdin === undefined) output = await spec.output();
    else {
      const child = spec.spawn();
      const writer = child.stdin.getWriter();
      // A write fails when the process exited before reading everything; its exit status says why.
      await writer.write(encoder.encode(stdin)).then(() => writer.close()).catch(() => {});
      output = await child.output();
    }
  } catch (error) {
    throw startError(command, args, error);
  }
  if (signal?.aborted) {
    throw new ExecAbortedError([command, ...args].join(" "), { cause: signal.reason });
  }
  const { code, stdout, stderr } = output;
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

/** {@link ScanExec} on `Deno.Command`: stdout read as it comes, in chunks, never kept whole. */
export async function denoScanExec(
  command: string,
  args: readonly string[],
  onText: (text: string) => boolean,
): Promise<ScanResult> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(command, {
      args: [...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    throw startError(command, args, error);
  }
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.getReader();
  const chunks = new TextDecoder();
  let stopped = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      stopped = onText(done ? chunks.decode() : chunks.decode(value, { stream: true }));
      if (stopped || done) break;
    }
  } finally {
    try {
      if (stopped) child.kill("SIGTERM");
    } catch {
      // It exited in between.
    }
    await reader.cancel().catch(() => {});
  }
  return { code: (await child.status).code, stderr: await stderr, stopped };
}
