/**
 * Errors the agent can name precisely, and the one printer that shows a
 * message once followed by its chain of causes.
 *
 * @module
 */

/** Exit codes of the CLI contract. */
export const exitCodes = { ok: 0, runtime: 1, usage: 2 } as const;

/** A Deno permission the sandbox did not grant: a deployment problem, not a bug. */
export class SandboxDeniedError extends Error {
  override readonly name = "SandboxDeniedError";
  constructor(readonly permission: "read" | "run", readonly target: string, cause: unknown) {
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

/** A fatal error's exit code: a sandbox denial is the deployment's to fix (2), the rest is 1. */
export function exitCodeFor(error: unknown): number {
  return error instanceof SandboxDeniedError ? exitCodes.usage : exitCodes.runtime;
}

/** The message, then each cause on its own line: what the user reads at the top level. */
export function formatErrorChain(error: unknown): string {
  const lines: string[] = [];
  const seen = new Set<unknown>();
  let current: unknown = error;
  while (current !== undefined && current !== null && !seen.has(current)) {
    seen.add(current);
    const message = current instanceof Error ? current.message : String(current);
    lines.push(lines.length === 0 ? message : `caused by: ${message}`);
    current = current instanceof Error ? current.cause : undefined;
  }
  return lines.join("\n");
}
