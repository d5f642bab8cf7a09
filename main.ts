/**
 * ip-masq-agent: wires the command line to the agent. Everything that decides
 * anything lives in lib/.
 *
 * @module
 */

import { Agent } from "./lib/host/agent.ts";
import type { Family } from "./lib/core/cidr.ts";
import { readConfigDir, watchConfigDir } from "./lib/host/config_dir.ts";
import { exitCodeFor, exitCodes, formatErrorChain } from "./lib/core/errors.ts";
import { type AgentFlags, flagValuesForLog, parseFlags, usage } from "./lib/core/flags.ts";
import { natTableClient, probeVersion } from "./lib/host/iptables.ts";
import { type Logger, setUpLogging } from "./lib/host/log.ts";
import { check, cleanup, dryRun, type ModeDeps } from "./lib/host/modes.ts";
import { enabledFamilies } from "./lib/core/desired.ts";
import { installSignalHandlers } from "./lib/host/signals.ts";
import { versionText } from "./lib/host/version.ts";

const programName = "ip-masq-agent";
const encoder = new TextEncoder();
const print = (text: string) =>
  Deno.stdout.writeSync(encoder.encode(text.endsWith("\n") ? text : `${text}\n`));
const printError = (text: string) => Deno.stderr.writeSync(encoder.encode(`${text}\n`));

async function main(args: readonly string[]): Promise<number> {
  const parsed = parseFlags(args);
  if (!parsed.ok) {
    printError(`${parsed.message}\n${usage(programName)}`);
    return exitCodes.usage;
  }
  const flags = parsed.flags;
  if (flags.help) {
    print(usage(programName));
    return exitCodes.ok;
  }
  if (flags.version) {
    print(versionText());
    return exitCodes.ok;
  }
  const log = setUpLogging({ verbosity: flags.verbosity, format: flags.logFormat });
  if (parsed.ignored.length > 0) {
    log.warn(`ignoring klog flags kept for compatibility: ${parsed.ignored.join(", ")}`);
  }
  try {
    return await runMode(flags, log);
  } catch (error) {
    log.error(formatErrorChain(error));
    return exitCodeFor(error);
  }
}

async function runMode(flags: AgentFlags, log: Logger): Promise<number> {
  const modeDeps: ModeDeps = { flags, log, print, readConfigDir };
  if (flags.dryRun) return await dryRun(modeDeps);
  const clients = { ipv4: natTableClient("ipv4"), ipv6: natTableClient("ipv6") };
  if (flags.cleanup) return await cleanup(modeDeps, clients);
  if (!flags.check) log.info(`starting ${versionText()}`, { flags: flagValuesForLog(flags) });
  const randomFullySupported = await probeRandomFully(flags, log);
  if (flags.check) return await check(modeDeps, clients, randomFullySupported);

  const agent = new Agent({
    flags,
    log,
    readConfigDir,
    clients,
    randomFullySupported,
    watch: watchConfigDir,
    // Defined when deno runs with --v8-flags=--expose-gc, as deno.json's tasks do.
    collectGarbage: (globalThis as { gc?: () => void }).gc,
  });
  const stop = new AbortController();
  const removeSignalHandlers = installSignalHandlers({
    onStop: (signal) => {
      if (!stop.signal.aborted) {
        log.info(`received ${signal}; exiting and leaving the rules in place`);
      }
      stop.abort(signal);
    },
    onReload: () => {
      log.info("received SIGHUP; reconciling now");
      agent.requestReconcile();
    },
  });
  try {
    return flags.once ? await agent.once(stop.signal) : await agent.run(stop.signal);
  } finally {
    removeSignalHandlers();
  }
}

/** Probed once at start: it needs one process launch per family, and the answer never changes. */
async function probeRandomFully(flags: AgentFlags, log: Logger) {
  const supported: Record<Family, boolean> = { ipv4: false, ipv6: false };
  for (const family of enabledFamilies(flags)) {
    const version = await probeVersion(family);
    supported[family] = version.randomFullySupported;
    if (flags.check) continue;
    log.info(
      `${version.description}: --random-fully ${
        version.randomFullySupported ? "supported" : "not supported (needs 1.6.2)"
      }` +
        (flags.randomFully ? "" : ", disabled by --random-fully=false"),
    );
  }
  return supported;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
