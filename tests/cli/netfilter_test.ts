/**
 * lib/cli/netfilter.ts without root (issue 16): which tools each start-up step runs, which
 * tables `--cleanup` visits, and what is logged, through a fake Exec. The detection's legacy
 * dumps answer "is legacy's nat table loaded" without a second launch (issue 18).
 *
 * @module
 */

import assert from "node:assert/strict";
import { defaultFlags } from "../../lib/settings/flags.ts";
import {
  chosenDataplane,
  cleanupTargets,
  probeRandomFully,
  removeOursFromOtherBackend,
} from "../../lib/cli/netfilter.ts";
import { detectMode } from "../../lib/iptables/mode_detection.ts";
import { CaptureLog } from "../support/capture_log.ts";
import { FakeExec } from "../support/fake_exec.ts";

const noChain = { code: 1, stdout: "", stderr: "iptables: No chain/target/match by that name.\n" };
const legacyNat = "*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n";
const ourJump = '-A POSTROUTING -m comment --comment "ip-masq-agent: ensure nat POSTROUTING ' +
  'directs all non-LOCAL destination traffic to our custom IP-MASQ-AGENT chain" -m addrtype ' +
  "! --dst-type LOCAL -j IP-MASQ-AGENT\n";
const ourMasquerade = '-A IP-MASQ-AGENT -m comment --comment "ip-masq-agent: outbound traffic ' +
  'is subject to MASQUERADE (must be last in chain)" -j MASQUERADE\n';

/** A node whose nft backend is empty, with `legacy` as `iptables-legacy-save` prints it. */
function node(legacy: { ipv4?: string; ipv6?: string } = {}, legacyChains = false) {
  return new FakeExec()
    .answer("iptables-nft", ["--version"], { stdout: "iptables v1.8.9 (nf_tables)\n" })
    .answer("ip6tables-nft", ["--version"], { stdout: "ip6tables v1.8.9 (nf_tables)\n" })
    .answer("iptables-legacy-save", [], { stdout: legacy.ipv4 ?? "" })
    .answer("ip6tables-legacy-save", [], { stdout: legacy.ipv6 ?? "" })
    .on((call) => {
      if (!legacyChains || call.command !== "iptables-legacy") return undefined;
      const chain = call.args.at(-1);
      if (chain === "-S") {
        return {
          code: 0,
          stdout: `-P POSTROUTING ACCEPT\n-N IP-MASQ-AGENT\n${ourJump}${ourMasquerade}`,
          stderr: "",
        };
      }
      if (chain === "POSTROUTING") {
        return { code: 0, stdout: `-P POSTROUTING ACCEPT\n${ourJump}`, stderr: "" };
      }
      if (chain === "IP-MASQ-AGENT") {
        return { code: 0, stdout: `-N IP-MASQ-AGENT\n${ourMasquerade}`, stderr: "" };
      }
      return undefined;
    })
    .answer("iptables-legacy-restore", [], {})
    .on((call) => call.args.includes("-S") ? noChain : undefined)
    .on((call) =>
      call.command === "nft" ? { code: 1, stdout: "", stderr: "No such file" } : undefined
    );
}

Deno.test("the --random-fully probe: one --version per enabled family, logged unless --check", async () => {
  const fake = node();
  const log = new CaptureLog();
  const flags = { ...defaultFlags, enableIpv6: true };
  assert.deepEqual(await probeRandomFully(flags, log, "nft", { exec: fake.exec }), {
    ipv4: true,
    ipv6: true,
  });
  assert.deepEqual(fake.lines, ["iptables-nft --version", "ip6tables-nft --version"]);
  assert.deepEqual(log.matching(/random-fully/), [
    "iptables v1.8.9 (nf_tables): --random-fully supported",
    "ip6tables v1.8.9 (nf_tables): --random-fully supported",
  ]);
  const quiet = new CaptureLog();
  await probeRandomFully({ ...defaultFlags, check: true }, quiet, "nft", { exec: node().exec });
  assert.deepEqual(quiet.lines, []);
});

Deno.test("--cleanup visits both families of both dataplanes, legacy where its nat is loaded", async () => {
  const fake = node({ ipv6: legacyNat });
  const targets = await cleanupTargets(defaultFlags, "nft", { exec: fake.exec });
  assert.deepEqual(targets.map(({ name, family, optional }) => [name, family, optional]), [
    ["nft", "ipv4", false],
    ["nftables", "ipv4", true],
    ["nft", "ipv6", true],
    ["legacy", "ipv6", true],
    ["nftables", "ipv6", true],
  ]);
  assert.deepEqual(fake.lines, ["iptables-legacy-save", "ip6tables-legacy-save"]);

  const nftables = await cleanupTargets({ ...defaultFlags, dataplane: "nftables" }, "legacy", {
    exec: node().exec,
  });
  assert.deepEqual(nftables.map(({ name, family, optional }) => [name, family, optional]), [
    ["legacy", "ipv4", true],
    ["nft", "ipv4", true],
    ["nftables", "ipv4", false],
    ["legacy", "ipv6", true],
    ["nft", "ipv6", true],
    ["nftables", "ipv6", true],
  ]);
});

Deno.test("the detection's whole legacy dumps answer for the other backend: no second dump", async () => {
  const fake = node({ ipv4: legacyNat });
  const { decision, legacyDumps } = await detectMode("auto", { exec: fake.exec });
  assert.equal(decision.mode, "nft");
  const dumps = fake.lines.filter((line) => line.endsWith("-legacy-save"));
  assert.deepEqual(dumps, ["iptables-legacy-save", "ip6tables-legacy-save"]);
  const before = fake.calls.length;
  const host = { exec: fake.exec, legacyDumps };
  const targets = await cleanupTargets(defaultFlags, decision.mode, host);
  assert.deepEqual(targets.filter((target) => target.name === "legacy").map((t) => t.family), [
    "ipv4",
  ]);
  await chosenDataplane({ ...defaultFlags, dataplane: "nftables" }, new CaptureLog(), "nft", host);
  assert.deepEqual(fake.lines.slice(before), [], "answered from the detection's dumps");

  // A dump that failed, or stopped at kubelet's hint, is read again.
  const failed = { loaded: false, hint: false, rules: 0, tables: [], failure: "x: denied" };
  const again = node({ ipv4: legacyNat });
  await cleanupTargets(defaultFlags, "nft", { exec: again.exec, legacyDumps: { ipv4: failed } });
  assert.deepEqual(again.lines, ["iptables-legacy-save", "ip6tables-legacy-save"]);
});

Deno.test("ours in the other backend is removed once at start, and said so", async () => {
  const fake = node({ ipv4: legacyNat }, true);
  const log = new CaptureLog();
  await removeOursFromOtherBackend(defaultFlags, log, "nft", { exec: fake.exec });
  assert.deepEqual(fake.lines, [
    "iptables-legacy-save",
    "iptables-legacy -w 5 -t nat -S POSTROUTING",
    "iptables-legacy -w 5 -t nat -S IP-MASQ-AGENT",
    "iptables-legacy -w 5 -t nat -S",
    "iptables-legacy-restore --noflush -w 5 -W 100000",
  ]);
  assert.match(fake.calls.at(-1)?.stdin ?? "", /-X IP-MASQ-AGENT/);
  assert.deepEqual(
    log.matching(/removed our rules from the legacy backend \(ipv4\)/, "warn").length,
    1,
  );

  // Not loaded there: nothing is listed, nothing logged.
  const clean = node();
  const quiet = new CaptureLog();
  await removeOursFromOtherBackend(defaultFlags, quiet, "nft", { exec: clean.exec });
  assert.deepEqual(clean.lines, ["iptables-legacy-save"]);
  assert.deepEqual(quiet.lines, []);
});

Deno.test("a failed check of the other backend is a warning, never an error", async () => {
  const fake = new FakeExec().on(() => {
    throw new Error("boom");
  });
  const log = new CaptureLog();
  await removeOursFromOtherBackend(defaultFlags, log, "nft", { exec: fake.exec });
  assert.deepEqual(log.matching(/could not check the legacy backend \(ipv4\)/, "warn").length, 1);
});
