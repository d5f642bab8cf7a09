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
import type { IptablesMode } from "./lib/core/iptables_mode.ts";
import { natTableClient, probeVersion } from "./lib/host/iptables.ts";
import { chooseMode, otherBackendPresent } from "./lib/host/mode_detection.ts";
import {
  type Dataplane,
  iptablesDataplane,
  nftablesDataplane,
  removeAll,
  switchingDataplane,
} from "./lib/host/dataplane.ts";
import { nftClient } from "./lib/host/nftables.ts";
import { type Logger, setUpLogging } from "./lib/host/log.ts";
import { check, cleanup, type CleanupTarget, dryRun, type ModeDeps } from "./lib/host/modes.ts";
import { explainMode, nodeTables } from "./lib/host/explain_mode.ts";
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
    printError(`${parsed.error}\n${usage(programName)}`);
    return exitCodes.usage;
  }
  const { flags, ignored } = parsed.value;
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
    return await runMode(flags, log);
  } catch (error) {
    log.error(formatErrorChain(error));
    return exitCodeFor(error);
  }
}

async function runMode(flags: AgentFlags, log: Logger): Promise<number> {
  const modeDeps: ModeDeps = { flags, log, print, readConfigDir };
  if (flags.dryRun) return await dryRun(modeDeps);
  if (flags.explain.length > 0) return await explainMode(modeDeps, nodeTables(flags));
  const { mode, evidence } = await chooseMode(flags.iptablesMode);
  if (flags.cleanup) return await cleanup(modeDeps, await cleanupTargets(flags, mode));
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
    : await probeRandomFully(flags, log, mode);
  const dataplane = await chosenDataplane(flags, log, mode);
  if (flags.check) return await check(modeDeps, dataplane, randomFullySupported);
  if (!nftables) await removeOursFromOtherBackend(flags, log, mode);

  const agent = new Agent({
    flags,
    log,
    readConfigDir,
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

function otherMode(mode: IptablesMode): IptablesMode {
  return mode === "nft" ? "legacy" : "nft";
}

function iptablesOf(flags: AgentFlags, mode: IptablesMode): Dataplane {
  const clients = { ipv4: natTableClient("ipv4", mode), ipv6: natTableClient("ipv6", mode) };
  return iptablesDataplane(clients, flags.masqChain);
}

/**
 * The dataplane `--dataplane` chooses, removing ours from the other one in
 * the same reconcile (a node that switched): with nftables, from both
 * iptables backends (legacy only where its nat table is loaded).
 */
async function chosenDataplane(
  flags: AgentFlags,
  log: Logger,
  mode: IptablesMode,
): Promise<Dataplane> {
  const nftables = nftablesDataplane(nftClient());
  const onRetiredError = (label: string, family: Family, error: unknown) =>
    log.warn(`could not remove our rules from ${label} (${family}); retrying next reconcile`, {
      error: formatErrorChain(error),
    });
  if (flags.dataplane === "iptables") {
    return switchingDataplane(iptablesOf(flags, mode), [nftables], onRetiredError);
  }
  const retired = [iptablesOf(flags, mode)];
  if (await otherBackendPresent(otherMode(mode), "ipv4")) {
    retired.push(iptablesOf(flags, otherMode(mode)));
  }
  return switchingDataplane(nftables, retired, onRetiredError);
}

/**
 * Both families of the chosen iptables backend, of the other one where it is
 * present, and of our nftables tables: `--cleanup` removes both dataplanes.
 */
async function cleanupTargets(flags: AgentFlags, mode: IptablesMode): Promise<CleanupTarget[]> {
  const targets: CleanupTarget[] = [];
  const iptables = iptablesOf(flags, mode);
  const other = iptablesOf(flags, otherMode(mode));
  const nftables = nftablesDataplane(nftClient());
  for (const family of ["ipv4", "ipv6"] as const) {
    const ipv6Optional = family === "ipv6" && !flags.enableIpv6;
    const chosen = (dataplane: "iptables" | "nftables") =>
      flags.dataplane === dataplane && !ipv6Optional;
    targets.push({ dataplane: iptables, family, name: mode, optional: !chosen("iptables") });
    if (await otherBackendPresent(otherMode(mode), family)) {
      targets.push({ dataplane: other, family, name: otherMode(mode), optional: true });
    }
    targets.push({
      dataplane: nftables,
      family,
      name: "nftables",
      optional: !chosen("nftables"),
    });
  }
  return targets;
}

/**
 * A node that switched backends, or an earlier v1/v2 that ran in the other
 * mode, can leave our chain and jump in the backend we did not choose; both
 * would masquerade. Removed once at start, touching nothing else there.
 */
async function removeOursFromOtherBackend(flags: AgentFlags, log: Logger, mode: IptablesMode) {
  const other = otherMode(mode);
  for (const family of enabledFamilies(flags)) {
    try {
      if (!(await otherBackendPresent(other, family))) continue;
      const clients = { ipv4: natTableClient("ipv4", other), ipv6: natTableClient("ipv6", other) };
      const plan = await removeAll(iptablesDataplane(clients, flags.masqChain), family);
      if (plan.payload === null) continue;
      log.warn(
        `removed our rules from the ${other} backend (${family}), which this node does not use: ` +
          plan.drift.map((drift) => drift.message).join("; "),
      );
    } catch (error) {
      log.warn(`could not check the ${other} backend (${family}) for rules of ours`, {
        error: formatErrorChain(error),
      });
    }
  }
}

/** Probed once at start: it needs one process launch per family, and the answer never changes. */
async function probeRandomFully(flags: AgentFlags, log: Logger, mode: IptablesMode) {
  const supported: Record<Family, boolean> = { ipv4: false, ipv6: false };
  for (const family of enabledFamilies(flags)) {
    const version = await probeVersion(mode, family);
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
