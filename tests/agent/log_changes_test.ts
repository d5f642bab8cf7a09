/**
 * What the loop logs, as the pure step it is: each thing once, and again only
 * when it changes. The loop's own tests (agent_test.ts) check the same lines
 * through a running agent; these pin the decisions one event at a time.
 */

import assert from "node:assert/strict";
import {
  chainIdentity,
  logChanges,
  type LogEvent,
  type Logged,
  type LogLine,
  nothingLogged,
} from "../../lib/agent/log_changes.ts";
import type { ConfigDirContents } from "../../lib/config/directory.ts";
import { defaultFlags } from "../../lib/settings/flags.ts";
import type { DataplaneName, FamilyOutcome } from "../../lib/policy/dataplane.ts";
import { desiredChains, loadConfig } from "../../lib/policy/desired.ts";

const configDir = "/etc/config";
const encoder = new TextEncoder();

function contents(files: Record<string, string>, ignored?: string[]): ConfigDirContents {
  return {
    kind: "files",
    files: Object.entries(files).map(([name, text]) => ({
      path: `${configDir}/${name}`,
      bytes: encoder.encode(text),
    })),
    ...(ignored ? { ignored } : {}),
  };
}

type Loaded = Extract<LogEvent, { kind: "loaded" }>;

function loaded(
  files: Record<string, string> | "missing",
  dataplane: DataplaneName = "iptables",
  resyncIntervalMs = 60_000,
): Loaded {
  const flags = { ...defaultFlags, configDir, enableIpv6: true };
  const config = loadConfig(
    files === "missing" ? { kind: "missing" } : contents(files),
    flags,
  );
  const desired = desiredChains(config.effective, flags, { ipv4: true, ipv6: true });
  return { kind: "loaded", configDir, loaded: config, desired, resyncIntervalMs, dataplane };
}

/** Steps through `events`, returning each step's lines and the record after the last. */
function run(events: readonly LogEvent[], from: Logged = nothingLogged) {
  const steps: LogLine[][] = [];
  let logged = from;
  for (const event of events) {
    const step = logChanges(logged, event);
    steps.push(step.lines);
    logged = step.logged;
  }
  return { steps, logged };
}

const messages = (lines: readonly LogLine[]) => lines.map((line) => line.message);

function written(family: "ipv4" | "ipv6", message = "1 missing"): FamilyOutcome {
  return { family, plan: { drift: [{ kind: "missing", message }], payload: "*nat\nCOMMIT\n" } };
}

const inSyncOutcome = (family: "ipv4" | "ipv6"): FamilyOutcome => ({
  family,
  plan: { drift: [], payload: null },
});

Deno.test("an ignored entry is warned about once per name, whatever else is read", () => {
  const { steps } = run([
    { kind: "read", configDir, contents: contents({}, ["config"]) },
    { kind: "read", configDir, contents: contents({}, ["config", "typo"]) },
    { kind: "read", configDir, contents: { kind: "missing" } },
    { kind: "read", configDir, contents: contents({}, ["typo", "config"]) },
  ]);
  assert.deepEqual(steps.map((lines) => lines.map((line) => line.fields?.ignored)), [
    ["config"],
    ["typo"],
    [],
    [],
  ]);
  assert.match(steps[0][0].message, /^\/etc\/config\/config is ignored: only entries whose name/);
  assert.equal(steps[0][0].level, "warn");
});

Deno.test("a loaded configuration is logged once; the same one again logs nothing", () => {
  const files = { "ip-masq-agent": "nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n" };
  const { steps } = run([loaded(files), loaded(files)]);
  assert.deepEqual(messages(steps[0].filter((line) => line.level === "info")), [
    "effective configuration",
    "desired ipv4 rules: 2 RETURN, then MASQUERADE",
    "desired ipv6 rules: 1 RETURN, then MASQUERADE",
  ]);
  assert.deepEqual(steps[1], []);
});

Deno.test("a change of configuration logs only the families whose rules changed", () => {
  const { steps } = run([
    loaded({ "ip-masq-agent": "nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n" }),
    loaded({ "ip-masq-agent": "nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n  - fd00::/8\n" }),
    // The same rules from another line: the configuration is logged, no family's rules.
    loaded({ "ip-masq-agent": "nonMasqueradeCIDRs:\n\n  - 10.0.0.0/8\n  - fd00::/8\n" }),
    loaded(
      { "ip-masq-agent": "nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n  - fd00::/8\n" },
      "iptables",
      5000,
    ),
  ]);
  assert.deepEqual(messages(steps[1].filter((line) => line.level === "info")), [
    "effective configuration",
    "desired ipv6 rules: 2 RETURN, then MASQUERADE",
  ]);
  assert.deepEqual(messages(steps[2]), []);
  assert.deepEqual(messages(steps[3]), ["effective configuration"]);
  assert.match(String(steps[3][0].fields?.config), /"resyncInterval":"5s"/);
});

Deno.test("at --v=2 every CIDR is logged with its place, and iptables rules only for iptables", () => {
  const files = { "ip-masq-agent": "nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n" };
  const [iptables] = run([loaded(files, "iptables")]).steps;
  const [nftables] = run([loaded(files, "nftables")]).steps;
  const debug = (lines: LogLine[]) => lines.filter((line) => line.level === "debug");
  assert.deepEqual(debug(nftables).filter((line) => line.message.includes("10.0.0.0/8")), [
    {
      level: "debug",
      message: "  RETURN 10.0.0.0/8",
      fields: { from: "/etc/config/ip-masq-agent:2:5" },
    },
  ]);
  assert.ok(!debug(nftables).some((line) => line.message.startsWith("  -A ")));
  const rules = messages(debug(iptables)).filter((message) => message.startsWith("  -A "));
  assert.equal(rules.length, 3 + 2, "ipv4: link-local, 10.0.0.0/8, MASQUERADE; ipv6: two");
  assert.match(rules[1], /^ {2}-A IP-MASQ-AGENT -d 10\.0\.0\.0\/8 .* -j RETURN$/);
  // Everything else is the same for both dataplanes.
  assert.deepEqual(
    iptables.filter((line) => !line.message.startsWith("  -A ")),
    nftables,
  );
});

Deno.test("the defaults are said to stand when no file or no list names them", () => {
  assert.equal(
    run([loaded("missing")]).steps[0][0].message,
    "config directory /etc/config does not exist; using the defaults",
  );
  assert.equal(
    run([loaded({})]).steps[0][0].message,
    "no ip-masq* file in /etc/config; using the defaults",
  );
  assert.match(
    run([loaded({ "ip-masq-agent": "masqLinkLocal: true\n" })]).steps[0][0].message,
    /^no config file names nonMasqueradeCIDRs; the default nonMasqueradeCIDRs stand \(10\.0/,
  );
});

Deno.test("a write is rules written after a change, drift repaired once in sync", () => {
  const files = { "ip-masq-agent": "nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n" };
  const { steps } = run([
    loaded(files),
    { kind: "applied", outcomes: [written("ipv4"), inSyncOutcome("ipv6")] },
    { kind: "applied", outcomes: [written("ipv4", "1 unexpected"), written("ipv6")] },
    loaded({ "ip-masq-agent": "nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n  - fd00::/8\n" }),
    { kind: "applied", outcomes: [written("ipv4"), written("ipv6")] },
    { kind: "applied", outcomes: [inSyncOutcome("ipv4"), inSyncOutcome("ipv6")] },
  ]);
  assert.deepEqual(steps[1], [{ level: "info", message: "rules written (ipv4): 1 missing" }]);
  assert.deepEqual(steps[2], [
    { level: "warn", message: "drift repaired (ipv4): 1 unexpected" },
    { level: "warn", message: "drift repaired (ipv6): 1 missing" },
  ]);
  // Only ipv6's desired rules changed: its write is the change, ipv4's a repair.
  assert.deepEqual(steps[4], [
    { level: "warn", message: "drift repaired (ipv4): 1 missing" },
    { level: "info", message: "rules written (ipv6): 1 missing" },
  ]);
  assert.deepEqual(steps[5], []);
});

Deno.test("a steady resync leaves the record as it is", () => {
  const files = { "ip-masq-agent": "nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n" };
  const { logged } = run([
    loaded(files),
    { kind: "applied", outcomes: [written("ipv4"), inSyncOutcome("ipv6")] },
  ]);
  const steady: LogEvent[] = [
    { kind: "read", configDir, contents: contents(files) },
    { kind: "valid" },
    { kind: "applied", outcomes: [inSyncOutcome("ipv4"), inSyncOutcome("ipv6")] },
  ];
  for (const event of steady) {
    const step = logChanges(logged, event);
    assert.deepEqual(step.lines, [], event.kind);
    assert.equal(step.logged, logged, event.kind);
  }
});

Deno.test("a rejection is logged once per error, and valid again once after it", () => {
  const { steps, logged } = run([
    { kind: "valid" },
    { kind: "rejected", error: "first", keepingLastGood: false },
    { kind: "rejected", error: "first", keepingLastGood: false },
    { kind: "rejected", error: "second", keepingLastGood: true },
    { kind: "valid" },
    { kind: "valid" },
  ]);
  assert.deepEqual(steps, [
    [],
    [{
      level: "error",
      message: "configuration rejected; no rules are applied until the configuration is valid",
      fields: { error: "first" },
    }],
    [],
    [{
      level: "error",
      message: "configuration rejected; keeping the last good configuration applied",
      fields: { error: "second" },
    }],
    [{ level: "info", message: "the configuration is valid again" }],
    [],
  ]);
  assert.equal(logged.configError, undefined);
});

Deno.test("a chain's identity leaves out provenance but keeps what a dataplane renders", () => {
  const chain = (text: string) => {
    return chainIdentity(loaded({ "ip-masq-agent": text }).desired[0]);
  };
  const base = chain("nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n");
  assert.equal(chain("# moved\nnonMasqueradeCIDRs: [10.0.0.0/8]\n"), base);
  assert.notEqual(chain("nonMasqueradeCIDRs:\n  - 10.0.0.0/9\n"), base);
  // The same iptables lines, but nftables keeps the built-in link-local range apart.
  assert.notEqual(
    chain("nonMasqueradeCIDRs: [169.254.0.0/16]\nmasqLinkLocal: true\n"),
    chain("nonMasqueradeCIDRs: [169.254.0.0/16]\n"),
  );
});
