/**
 * The errors the deployment must fix, the exit-code policy, and the printer of error chains.
 *
 * @module
 */

/** Exit codes: 0 success, 1 a runtime failure (iptables), 2 what the deployment must fix. */
export const exitCodes = { ok: 0, runtime: 1, usage: 2 } as const;

/** What the deployment must fix (config, sandbox, foreign chain): every subclass exits 2. */
export abstract class DeploymentError extends Error {}

/** A Deno permission the sandbox did not grant: a deployment problem, not a bug. */
export class SandboxDeniedError extends DeploymentError {
  /** Names the class in stack traces and `formatErrorChain`. */
  override readonly name = "SandboxDeniedError";
  /** The message says which permission list to change, and how. */
  constructor(
    readonly permission: "read" | "run",
    /** The path or program that was denied. */
    readonly target: string,
    cause: unknown,
  ) {
    super(
      permission === "read"
        ? `the agent's sandbox does not allow reading ${target}: the binary may read only the ` +
          `directories in its permission list (deno.json "permissions.agent.read", /etc/config); ` +
          `mount the config there or rebuild with --allow-read=${target}`
        : `the agent's sandbox does not allow running ${target}: only the iptables tools in ` +
          `deno.json "permissions.agent.run" may be run`,
      { cause },
    );
  }
}

/**
 * `--masq-chain` names a chain holding a rule we did not write (kube-proxy's `KUBE-POSTROUTING`,
 * Docker's `DOCKER`): never flushed, rewritten or deleted, in any mode; choose another (exit 2).
 */
export class ForeignChainError extends DeploymentError {
  /** Names the class in stack traces and `formatErrorChain`. */
  override readonly name = "ForeignChainError";
  /** The message names the chain, the family and the first foreign rule. */
  constructor(
    /** The chain `--masq-chain` names. */
    readonly chain: string,
    /** The family whose nat table holds it. */
    readonly family: string,
    /** One rule in it that we did not write, as `iptables -S` prints it. */
    readonly foreignRule: string,
  ) {
    const shown = foreignRule.length > 300 ? `${foreignRule.slice(0, 300)}...` : foreignRule;
    super(
      `refusing to use the nat chain ${chain} (${family}, --masq-chain): it holds a rule ` +
        `ip-masq-agent did not write (${shown}), so it belongs to another tool and is never ` +
        `flushed, rewritten or deleted; choose another --masq-chain (the default is ` +
        `IP-MASQ-AGENT). Nothing was written`,
    );
  }
}

/**
 * The exit code for an error the agent stops on: 2 for a {@link DeploymentError}, else 1.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { exitCodeFor, SandboxDeniedError } from "./errors.ts";
 *
 * assert.equal(exitCodeFor(new SandboxDeniedError("read", "/etc/config", undefined)), 2);
 * assert.equal(exitCodeFor(new Error("iptables-restore failed")), 1);
 * ```
 */
export function exitCodeFor(error: unknown): number {
  return error instanceof DeploymentError ? exitCodes.usage : exitCodes.runtime;
}

/** The message, then each cause on its own line: what the user reads at the top level. */
export function formatErrorChain(error: unknown): string {
  const chain = new Set<unknown>();
  for (let link = error; link !== undefined && link !== null && !chain.has(link);) {
    chain.add(link);
    link = link instanceof Error ? link.cause : undefined;
  }
  const messages = [...chain].map((link) => link instanceof Error ? link.message : String(link));
  return messages.join("\ncaused by: ");
}
