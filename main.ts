/**
 * ip-masq-agent: wires the command line to the agent. Everything that decides
 * anything lives in lib/.
 *
 * @module
 */

// First, so that parse.ts, evaluated later, loads the yaml package only when a file needs it.
import "./lib/config/yaml_on_demand.ts";
import { Agent } from "./lib/agent/agent.ts";
import { readConfigDir, watchConfigDir } from "./lib/config/directory.ts";
import { exitCodeFor, exitCodes, formatErrorChain } from "./lib/base/errors.ts";
import { flagValuesForLog, parseFlags, usage } from "./lib/settings/flags.ts";
import { detectMode, hostDetectionDeps } from "./lib/iptables/mode_detection.ts";
import {
  chosenDataplane,
  cleanupTargets,
  type NetfilterHost,
  probeRandomFully,
  removeOursFromOtherBackend,
} from "./lib/cli/netfilter.ts";
import { type Logger, setUpLogging } from "./lib/base/log.ts";
import { check, cleanup, dryRun, flagsWithSettings, type ModeDeps } from "./lib/cli/one_shot.ts";
import type { CommandLine } from "./lib/settings/keys.ts";
import { type ConfigDirContents, prepareParse } from "./lib/config/parse.ts";
import { installSignalHandlers } from "./lib/agent/signals.ts";
import { versionText } from "./lib/cli/version.ts";

const programName = "ip-masq-agent";
const encoder = new TextEncoder();
const print = (text: string) =>
  Deno.stdout.writeSync(encoder.encode(text.endsWith("\n") ? text : `${text}\n`));
const printError = (text: string) => Deno.stderr.writeSync(encoder.encode(`${text}\n`));

async function main(args: readonly string[]): Promise<number> {
  const parsed = parseFlags(args);
  if (!parsed.ok) {
    printError(`${parsed.error}\n${usage(programName)}`);
    return exitCodes.usage;
  }
  const { flags, ignored, given } = parsed.value;
  if (flags.help) {
    print(usage(programName));
    return exitCodes.ok;
  }
  if (flags.version) {
    print(versionText());
    return exitCodes.ok;
  }
  const log = setUpLogging({ verbosity: flags.verbosity, format: flags.logFormat });
  if (ignored.length > 0) {
    log.warn(`ignoring klog flags kept for compatibility: ${ignored.join(", ")}`);
  }
  try {
    return await runMode({ flags, given }, log);
  } catch (error) {
    log.error(formatErrorChain(error));
    return exitCodeFor(error);
  }
}

/** Every read of the config directory, ready to parse: `yaml` is loaded if a file needs it. */
async function readConfig(dir: string): Promise<ConfigDirContents> {
  const contents = await readConfigDir(dir);
  await prepareParse(contents);
  return contents;
}

async function runMode(commandLine: CommandLine, log: Logger): Promise<number> {
  // The config's settings (masqChain, toPorts, ...) apply before anything is composed from them.
  const settled = await flagsWithSettings(commandLine, log, readConfig);
  const { flags } = settled;
  // Handed on once, and not kept here while the agent runs: at 10,000 CIDRs it is megabytes.
  let startupLoad = settled.startupLoad;
  const modeDeps = (): ModeDeps => ({
    flags,
    log,
    print,
    readConfigDir: readConfig,
    commandLine,
    startupLoad,
  });
  const takeStartupLoad = () => {
    const load = startupLoad;
    startupLoad = undefined;
    return load;
  };
  if (flags.dryRun) return await dryRun(modeDeps());
  if (flags.explain.length > 0) {
    // Loaded only for --explain: its modules (the tracer, the decision walk) cost the running
    // agent ~1.5 MiB of RSS otherwise (docs/benchmarks.md, issue 18).
    const { explainMode, nodeTables } = await import("./lib/cli/explain_run.ts");
    return await explainMode(modeDeps(), nodeTables(flags));
  }
  const { decision: { mode, evidence }, legacyDumps } = await detectMode(
    flags.iptablesMode,
    hostDetectionDeps,
  );
  const host: NetfilterHost = { ...hostDetectionDeps, legacyDumps };
  if (flags.cleanup) return await cleanup(modeDeps(), await cleanupTargets(flags, mode, host));
  if (!flags.check) {
    log.info(
      `starting ${versionText()}; dataplane ${flags.dataplane}; iptables mode ${mode} (${evidence})`,
      { flags: flagValuesForLog(flags) },
    );
  }
  const nftables = flags.dataplane === "nftables";
  // nft has had fully-random since 0.9.0 (2018): nothing to probe.
  const randomFullySupported = nftables
    ? { ipv4: true, ipv6: true }
    : await probeRandomFully(flags, log, mode, host);
  const dataplane = await chosenDataplane(flags, log, mode, host);
  if (flags.check) return await check(modeDeps(), dataplane, randomFullySupported);
  if (!nftables) await removeOursFromOtherBackend(flags, log, mode, host);

  const agent = new Agent({
    flags,
    commandLine,
    startupLoad: takeStartupLoad(),
    log,
    readConfigDir: readConfig,
    dataplane,
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

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
