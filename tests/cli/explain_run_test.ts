/**
 * The `--explain` mode's shell (lib/cli/explain_run.ts) without root: what
 * it reads (only POSTROUTING and our chain, like --check), what it prints in
 * text and JSON, and that an unreadable table still gives the config's answer
 * with exit 0, while a bad config throws on (main.ts exits 2).
 *
 * @module
 */

import assert from "node:assert/strict";
import { ConfigError } from "../../lib/base/problems.ts";
import { type AgentFlags, parseFlags } from "../../lib/settings/flags.ts";
import { explainMode, type LiveTables } from "../../lib/cli/explain_run.ts";
import { type NatTableClient } from "../../lib/iptables/client.ts";
import { ToolError } from "../../lib/base/tool.ts";
import type { Dataplane } from "../../lib/policy/dataplane.ts";
import type { ModeDeps } from "../../lib/cli/one_shot.ts";
import { CaptureLog } from "../support/capture_log.ts";
import {
  upstreamJumpLine,
  upstreamMasqueradeLine,
  upstreamReturnLine,
} from "../support/upstream_rules.ts";

function flagsOf(argv: string[]): AgentFlags {
  const parsed = parseFlags(argv);
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.value.flags;
}

function deps(argv: string[], files: Record<string, string> | "missing") {
  const printed: string[] = [];
  const log = new CaptureLog();
  const modeDeps: ModeDeps = {
    flags: flagsOf(argv),
    log,
    print: (text) => printed.push(text),
    readConfigDir: () =>
      Promise.resolve(
        files === "missing" ? { kind: "missing" } : {
          kind: "files",
          files: Object.entries(files).map(([name, text]) => ({
            path: `/etc/config/${name}`,
            bytes: new TextEncoder().encode(text),
          })),
        },
      ),
  };
  return { modeDeps, printed, log };
}

/** A table holding `postrouting` and our chain as the defaults render it; records what is read. */
function fakeTables(postrouting: string[]): { open: () => Promise<LiveTables>; reads: string[] } {
  const reads: string[] = [];
  // The defaults' chain in upstream's literal text (v1's defaults: link-local, then RFC 1918),
  // not lib's rendering, so a rendering that changed shows as drift here.
  const ours = [
    ...["169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"].map((cidr) =>
      upstreamReturnLine(cidr)
    ),
    upstreamMasqueradeLine(),
  ];
  const client = (family: "ipv4" | "ipv6"): NatTableClient => ({
    family,
    mode: "nft",
    listChain: (chain) => {
      reads.push(`${family} -S ${chain}`);
      if (chain === "POSTROUTING") {
        return Promise.resolve(["-P POSTROUTING ACCEPT", ...postrouting, ""].join("\n"));
      }
      return Promise.resolve(["-N IP-MASQ-AGENT", ...ours, ""].join("\n"));
    },
    listTable: () => Promise.reject(new Error("--explain must not list the whole table")),
    restore: () => Promise.reject(new Error("--explain must not write")),
  });
  return {
    reads,
    open: () =>
      Promise.resolve({
        mode: "nft",
        clients: { ipv4: client("ipv4"), ipv6: client("ipv6") },
        randomFullySupported: { ipv4: true, ipv6: true },
      }),
  };
}

Deno.test("text: one answer per destination, live compared, reading only what --check reads", async () => {
  const { modeDeps, printed } = deps(["--explain=10.1.2.3,8.8.8.8"], "missing");
  const tables = fakeTables([upstreamJumpLine()]);
  assert.equal(await explainMode(modeDeps, tables.open), 0);
  assert.equal(printed.length, 2);
  assert.match(
    printed[0],
    /^10\.1\.2\.3 \(ipv4\): keep source\n {2}because: default \(no config file present\): 10\.0\.0\.0\/8 \(RFC 1918\)\n {2}live \(iptables nft\): same answer \(keep source\), decided by -A IP-MASQ-AGENT -d 10\.0\.0\.0\/8 /,
  );
  assert.match(printed[1], /^8\.8\.8\.8 \(ipv4\): masquerade\n/);
  // The live chain is upstream's literal text of the defaults: what lib renders must equal it.
  for (const answer of printed) assert.doesNotMatch(answer, /drift|differ/, answer);
  assert.deepEqual(tables.reads, ["ipv4 -S POSTROUTING", "ipv4 -S IP-MASQ-AGENT"]);
});

Deno.test("json: one object per destination, with the provenance and the live answer", async () => {
  const { modeDeps, printed } = deps(
    ["--explain=10.1.2.3", "--explain-source=10.244.1.2", "--log-format=json"],
    { "ip-masq-agent": "nonMasqueradeCIDRs:\n  - 10.0.0.0/8\nmasqueradeCIDRs: [10.1.0.0/16]\n" },
  );
  const tables = fakeTables([upstreamJumpLine()]);
  assert.equal(await explainMode(modeDeps, tables.open), 0);
  const answer = JSON.parse(printed[0]);
  assert.equal(answer.verdict, "masquerade");
  assert.deepEqual(
    { key: answer.because.key, file: answer.because.file, line: answer.because.line },
    { key: "masqueradeCIDRs", file: "/etc/config/ip-masq-agent", line: 3 },
  );
  // The live chain is the defaults': it RETURNs 10.0.0.0/8, so the live answer differs.
  assert.equal(answer.live.status, "differs");
  assert.match(answer.live.reasons[0], /^our chain IP-MASQ-AGENT drifted/);
});

Deno.test("an unreadable table still gives the config's answer, says why, and exits 0", async () => {
  const { modeDeps, printed } = deps(["--explain=10.1.2.3"], "missing");
  const code = await explainMode(modeDeps, () =>
    Promise.reject(
      new ToolError(
        "iptables-nft not found: install iptables",
        "missing",
        "iptables-nft --version",
      ),
    ));
  assert.equal(code, 0);
  assert.match(printed[0], /^10\.1\.2\.3 \(ipv4\): keep source$/m);
  assert.match(
    printed[0],
    /live: not compared: cannot read the live nat table: .*iptables-nft not found/,
  );
});

Deno.test("a listing that fails (not root) is reported per family, the answer stands", async () => {
  const { modeDeps, printed } = deps(["--explain=8.8.8.8"], "missing");
  const code = await explainMode(modeDeps, () =>
    Promise.resolve({
      mode: "legacy",
      clients: {
        ipv4: {
          family: "ipv4",
          mode: "legacy",
          listChain: () =>
            Promise.reject(
              new ToolError(
                "iptables-legacy -w 5 -t nat -S POSTROUTING exited with status 4: Permission denied (you must be root)",
                "failed",
                "iptables-legacy -w 5 -t nat -S POSTROUTING",
              ),
            ),
          listTable: () => Promise.reject(new Error("unused")),
          restore: () => Promise.reject(new Error("unused")),
        },
        ipv6: {} as NatTableClient,
      },
      randomFullySupported: { ipv4: true, ipv6: true },
    }));
  assert.equal(code, 0);
  assert.match(printed[0], /^8\.8\.8\.8 \(ipv4\): masquerade$/m);
  assert.match(printed[0], /live: not compared: .*you must be root/);
});

Deno.test("a config error throws its ConfigError on (exit 2 in main.ts)", async () => {
  const { modeDeps, printed } = deps(["--explain=10.1.2.3"], {
    "ip-masq-agent": "nonMasqueradeCIDRs: [10.0.0.0/8]\nmasqueradeCIDRs: [10.0.0.0/8]\n",
  });
  await assert.rejects(() => explainMode(modeDeps, fakeTables([]).open), ConfigError);
  assert.deepEqual(printed, []);
});

Deno.test("findings are logged as warnings, as in every mode", async () => {
  const { modeDeps, log } = deps(["--explain=10.1.2.3"], {
    "ip-masq-agent": "nonMasqueradeCIDRs: [10.0.0.0/8]\nmasqueradeCIDRs: [192.168.0.0/24]\n",
  });
  await explainMode(modeDeps, fakeTables([]).open);
  assert.equal(log.count(/has no effect/, "warn"), 1, log.text());
});

Deno.test("--dataplane=nftables: our table judged by its planner, read only", async () => {
  const planned: string[] = [];
  const nft = (drift: string[]): Dataplane => ({
    label: "nftables",
    read: () => Promise.resolve(undefined),
    plan: (desired) => {
      planned.push(desired.family);
      return {
        drift: drift.map((message) => ({ kind: "x", message })),
        payload: drift.length ? "x" : null,
      };
    },
    apply: () => Promise.reject(new Error("--explain must not write")),
    readForRemoval: () => Promise.reject(new Error("unused")),
    planRemoval: () => {
      throw new Error("unused");
    },
  });
  const open = () => Promise.reject(new Error("the iptables tables are not read"));
  const inSync = deps(["--explain=8.8.8.8", "--dataplane=nftables"], "missing");
  assert.equal(await explainMode(inSync.modeDeps, open, () => nft([])), 0);
  assert.match(
    inSync.printed[0],
    /live \(nftables\): same answer \(masquerade\), decided by our nftables table, in sync/,
  );
  const drifted = deps(["--explain=8.8.8.8", "--dataplane=nftables"], "missing");
  await explainMode(drifted.modeDeps, open, () => nft(["set nomasq lacks 10.0.0.0/8"]));
  assert.match(drifted.printed[0], /may differ: masquerade or unknown/);
  assert.match(
    drifted.printed[0],
    /our nftables table drifted \(set nomasq lacks 10\.0\.0\.0\/8\)/,
  );
  assert.deepEqual(planned, ["ipv4", "ipv4"]);
});
