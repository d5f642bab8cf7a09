/**
 * The real entry point (`deno task start`'s command line, production
 * permissions) against real iptables, for both the nft and the legacy backend
 * and both families, each scenario in its own throwaway network namespace.
 *
 * The expected rule lines are spelled out literally here, not imported from
 * lib/: they are the upstream contract, and the live `iptables-save` output
 * is the judge of whether our rendering is canonical.
 */

import { deepStrictEqual, equal, match, ok } from "node:assert/strict";
import { assertExit } from "../../lab/agent_process.ts";
import { backends, netnsTest } from "../../lab/host.ts";
import { families, type Family, type Lab, withLab } from "../../lab/lab.ts";
import { ruleLines } from "../../lab/netns.ts";
import { eventually } from "../../lab/wait.ts";
import {
  upstreamChain,
  upstreamJumpComment,
  upstreamJumpLine,
  upstreamMasqueradeComment,
  upstreamMasqueradeLine,
  upstreamQuotedJumpLine,
  upstreamReturnComment,
  upstreamReturnLine,
} from "../support/upstream_rules.ts";

const CHAIN = upstreamChain;
const RETURN_COMMENT = upstreamReturnComment;
const MASQ_COMMENT = upstreamMasqueradeComment;
const jumpComment = upstreamJumpComment;
const jumpLine = upstreamJumpLine;
const quotedJumpLine = upstreamQuotedJumpLine;
const returnLine = upstreamReturnLine;
const masqLine = upstreamMasqueradeLine;

/** The jump's match and target as iptables arguments, for -A/-D/-C. */
const jumpArgs = (chain = CHAIN, comment = jumpComment(chain)) => [
  "-m",
  "comment",
  "--comment",
  comment,
  "-m",
  "addrtype",
  "!",
  "--dst-type",
  "LOCAL",
  "-j",
  chain,
];

const CONFIG = [
  "# written the way operators write their ConfigMaps",
  "nonMasqueradeCIDRs:",
  "  - 10.0.0.0/8",
  "  - 192.168.0.0/16",
  "  - fd00::/8",
  "  - 2001:db8::/32",
  "masqLinkLocal: false",
  "",
].join("\n");

const exemptions: Record<Family, string[]> = {
  ipv4: ["169.254.0.0/16", "10.0.0.0/8", "192.168.0.0/16"],
  ipv6: ["fe80::/10", "fd00::/8", "2001:db8::/32"],
};

const builtinChains = [
  ":PREROUTING ACCEPT",
  ":INPUT ACCEPT",
  ":OUTPUT ACCEPT",
  ":POSTROUTING ACCEPT",
];

function chainRules(family: Family, chain = CHAIN, randomFully = true): string[] {
  return [
    ...exemptions[family].map((cidr) => returnLine(cidr, chain)),
    masqLine(chain, randomFully),
  ];
}

/** The whole nat table (ruleLines form) of a node that holds only our rules. */
function freshNat(family: Family, chain = CHAIN, rules = chainRules(family, chain)): string[] {
  return [...builtinChains, `:${chain} -`, jumpLine(chain), ...rules];
}

async function natLines(lab: Lab, family: Family): Promise<string[]> {
  return ruleLines(await lab.save(family));
}

/** Every table of a family as saved, minus the timestamp comments and chain counters. */
async function fullSave(lab: Lab, family: Family): Promise<string[]> {
  return (await lab.saveAll(family)).split("\n")
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => line.startsWith(":") ? line.replace(/ \[\d+:\d+\]$/, "") : line);
}

/** A full save without our chain's declaration, its rules and our jump(s) to it. */
function withoutOurs(lines: readonly string[], chain = CHAIN): string[] {
  return lines.filter((line) =>
    !line.startsWith(`:${chain} `) && !line.startsWith(`-A ${chain} `) &&
    line !== jumpLine(chain) && line !== quotedJumpLine(chain)
  );
}

function postrouting(lines: readonly string[]): string[] {
  return lines.filter((line) => line.startsWith("-A POSTROUTING "));
}

function countMatches(text: string, pattern: RegExp): number {
  return text.match(new RegExp(pattern.source, "g"))?.length ?? 0;
}

const waitFor = (what: string, condition: () => boolean | Promise<boolean>) =>
  eventually(what, condition, 20_000, 25);

/** What the agent launched since the last reset: listings and restores per family. */
function launches(lab: Lab) {
  return lab.launches();
}

const steadyState = {
  "iptables -S": 2,
  "ip6tables -S": 2,
  "iptables-restore": 0,
  "ip6tables-restore": 0,
};

/** Installs with CONFIG for both families and checks the result is exactly the fresh state. */
async function install(lab: Lab, extraArgs: readonly string[] = []): Promise<void> {
  await lab.writeConfig(CONFIG);
  assertExit(await lab.agent(["--once", "--enable-ipv6", ...extraArgs]), 0, "install --once");
}

for (const backend of backends) {
  // 1. Fresh install.
  netnsTest(`fresh install (--once): exact rules for ipv4 and ipv6 (${backend})`, async () => {
    await withLab(backend, "fresh", async (lab) => {
      await lab.writeConfig(CONFIG);
      const result = await lab.agent(["--once", "--enable-ipv6"]);
      assertExit(result, 0, "--once");
      match(result.stderr, /rules written \(ipv4\)/);
      match(result.stderr, /rules written \(ipv6\)/);
      for (const family of families) {
        deepStrictEqual(await natLines(lab, family), freshNat(family), `${family} nat table`);
      }
      deepStrictEqual(await launches(lab), {
        "iptables -S": 2,
        "ip6tables -S": 2,
        "iptables-restore": 1,
        "ip6tables-restore": 1,
      });
    });
  });

  netnsTest(`fresh install without a config dir: defaults, ipv4 only (${backend})`, async () => {
    await withLab(backend, "defaults", async (lab) => {
      const result = await lab.agent(["--once"], { configDir: undefined });
      assertExit(result, 0, "--once without /etc/config");
      match(result.stderr, /does not exist; using the defaults/);
      deepStrictEqual(
        await natLines(lab, "ipv4"),
        freshNat("ipv4", CHAIN, [
          returnLine("169.254.0.0/16"),
          returnLine("10.0.0.0/8"),
          returnLine("172.16.0.0/12"),
          returnLine("192.168.0.0/16"),
          masqLine(),
        ]),
      );
      const ipv6 = await natLines(lab, "ipv6");
      ok(!ipv6.some((line) => line.includes(CHAIN)), `ip6tables untouched: ${ipv6.join("\n")}`);
      equal((await launches(lab))["ip6tables -S"], 0, "no ip6tables call without --enable-ipv6");
    });
  });

  // 2. Re-run: no duplicate jump and not a single write.
  netnsTest(
    `re-run (--once): no duplicate jump, no write, counters kept (${backend})`,
    async () => {
      await withLab(backend, "rerun", async (lab) => {
        await install(lab);
        // Give our rules counters a rewrite would reset. (ip6tables-nft ignores -c, so the
        // counter proof covers the families whose tool takes it; the call count covers all.)
        const countersSet: Family[] = [];
        for (const family of families) {
          const cidr = exemptions[family][0];
          // deno-fmt-ignore
          await lab.ipt(family, [
            "-t", "nat", "-R", CHAIN, "1", "-c", "7", "700",
            "-d", cidr, "-m", "comment", "--comment", RETURN_COMMENT, "-j", "RETURN",
          ]);
          // deno-fmt-ignore
          await lab.ipt(family, [
            "-t", "nat", "-R", "POSTROUTING", "1", "-c", "3", "300", ...jumpArgs(),
          ]);
          if (/^\[7:700\] /m.test(await lab.saveWithCounters(family))) countersSet.push(family);
        }
        ok(countersSet.includes("ipv4"), "iptables -R -c sets counters");
        const before = {
          ipv4: await lab.saveWithCounters("ipv4"),
          ipv6: await lab.saveWithCounters("ipv6"),
        };
        await lab.tools.reset();

        const again = await lab.agent(["--once", "--enable-ipv6"]);
        assertExit(again, 0, "second --once");
        ok(
          !/rules written|drift/.test(again.stderr),
          `nothing logged as written:\n${again.stderr}`,
        );
        deepStrictEqual(await launches(lab), steadyState, "one save per family, no restore");
        for (const family of families) {
          deepStrictEqual(await natLines(lab, family), freshNat(family), `${family} unchanged`);
          const saved = await lab.saveWithCounters(family);
          deepStrictEqual(
            saved.split("\n").filter((line) => line.startsWith("[")),
            before[family].split("\n").filter((line) => line.startsWith("[")),
            `${family} rule counters preserved`,
          );
          if (countersSet.includes(family)) {
            match(saved, new RegExp(`^\\[7:700\\] -A ${CHAIN} -d `, "m"));
            match(saved, /^\[3:300\] -A POSTROUTING /m);
          }
        }

        await lab.tools.reset();
        const check = await lab.agent(["--check", "--enable-ipv6"]);
        assertExit(check, 0, "--check after re-run");
        equal(check.stdout.trim(), "in sync: ipv4, ipv6");
        deepStrictEqual(await launches(lab), steadyState, "--check only reads");
      });
    },
  );

  // 3. Upgrades from existing installations.
  netnsTest(`upgrade from a v2 quoted jump (${backend})`, async () => {
    await withLab(backend, "v2", async (lab) => {
      const foreignBefore = { ipv4: "172.17.0.0/16", ipv6: "fd00:17::/64" };
      for (const family of families) {
        await lab.ipt(family, ["-t", "nat", "-N", CHAIN]);
        for (const cidr of exemptions[family]) {
          // deno-fmt-ignore
          await lab.ipt(family, [
            "-t", "nat", "-A", CHAIN, "-d", cidr, "-m", "comment", "--comment", RETURN_COMMENT,
            "-j", "RETURN",
          ]);
        }
        // deno-fmt-ignore
        await lab.ipt(family, [
          "-t", "nat", "-A", CHAIN, "-m", "comment", "--comment", MASQ_COMMENT, "-j", "MASQUERADE",
        ]);
        // deno-fmt-ignore
        await lab.ipt(family, [
          "-t", "nat", "-A", "POSTROUTING", "-s", foreignBefore[family], "!", "-o", "docker0",
          "-j", "MASQUERADE",
        ]);
        await lab.ipt(family, [
          "-t",
          "nat",
          "-A",
          "POSTROUTING",
          ...jumpArgs(CHAIN, `"${jumpComment(CHAIN)}"`),
        ]);
        await lab.ipt(family, ["-t", "nat", "-A", "POSTROUTING", "-o", "eth9", "-j", "MASQUERADE"]);
        ok((await natLines(lab, family)).includes(quotedJumpLine()), "the v2 jump is in place");
      }
      await lab.writeConfig(CONFIG);

      const check = await lab.agent(["--check", "--enable-ipv6"]);
      assertExit(check, 1, "--check on a v2 install");
      match(check.stdout, /ipv4: POSTROUTING jump to IP-MASQ-AGENT uses the old quoted comment/);
      match(check.stdout, /ipv6: POSTROUTING jump to IP-MASQ-AGENT uses the old quoted comment/);

      assertExit(await lab.agent(["--once", "--enable-ipv6"]), 0, "--once upgrade");
      for (const family of families) {
        const lines = await natLines(lab, family);
        deepStrictEqual(postrouting(lines), [
          `-A POSTROUTING -s ${foreignBefore[family]} ! -o docker0 -j MASQUERADE`,
          "-A POSTROUTING -o eth9 -j MASQUERADE",
          jumpLine(),
        ], `${family}: exactly one canonical jump, foreign rules kept`);
        deepStrictEqual(
          lines.filter((line) => line.startsWith(`-A ${CHAIN} `)),
          chainRules(family),
        );
      }
      await lab.tools.reset();
      assertExit(await lab.agent(["--once", "--enable-ipv6"]), 0, "--once after upgrade");
      deepStrictEqual(await launches(lab), steadyState, "the upgraded state is steady");
    });
  });

  netnsTest(`upgrade from a v1 unquoted jump, also next to a quoted one (${backend})`, async () => {
    await withLab(backend, "v1", async (lab) => {
      await lab.writeConfig(CONFIG);
      // A v1 install: the same rule text, the jump between other tools' rules.
      for (const family of families) {
        const payload = [
          "*nat",
          `:${CHAIN} - [0:0]`,
          "-A POSTROUTING -o eth8 -j MASQUERADE",
          jumpLine(),
          "-A POSTROUTING -o eth9 -j MASQUERADE",
          ...chainRules(family),
          "COMMIT",
          "",
        ].join("\n");
        await lab.restore(family, payload);
      }
      const installed = { ipv4: await natLines(lab, "ipv4"), ipv6: await natLines(lab, "ipv6") };
      assertExit(await lab.agent(["--once", "--enable-ipv6"]), 0, "--once over v1");
      deepStrictEqual(await launches(lab), steadyState, "a v1 install is adopted without a write");
      for (const family of families) {
        deepStrictEqual(await natLines(lab, family), installed[family], `${family} kept as is`);
      }

      // Some v1 releases quoted the comment: a node may carry both spellings.
      for (const family of families) {
        // deno-fmt-ignore
        await lab.ipt(family, [
          "-t", "nat", "-I", "POSTROUTING", "1", ...jumpArgs(CHAIN, `"${jumpComment(CHAIN)}"`),
        ]);
      }
      await lab.tools.reset();
      assertExit(await lab.agent(["--once", "--enable-ipv6"]), 0, "--once over both spellings");
      for (const family of families) {
        deepStrictEqual(await natLines(lab, family), installed[family], `${family}: one jump`);
      }
      equal(await lab.tools.count(lab.agentTool("ipv6", "restore")), 1);
      equal(await lab.tools.count(lab.agentTool("ipv6", "restore")), 1);
    });
  });

  // 4. Coexistence with other tools, and --cleanup leaving them alone.
  netnsTest(`coexistence: foreign rules preserved byte for byte (${backend})`, async () => {
    await withLab(backend, "coexist", async (lab) => {
      await lab.restore("ipv4", foreignRules.ipv4);
      await lab.restore("ipv6", foreignRules.ipv6);
      const original = { ipv4: await fullSave(lab, "ipv4"), ipv6: await fullSave(lab, "ipv6") };
      for (const family of families) {
        ok(original[family].length > 20, `foreign ${family} rules loaded`);
      }

      await install(lab);
      for (const family of families) {
        const after = await fullSave(lab, family);
        deepStrictEqual(withoutOurs(after), original[family], `${family}: only ours added`);
        const rules = postrouting(after);
        equal(rules.filter((line) => line.endsWith(`-j ${CHAIN}`)).length, 1, "one jump");
        equal(rules.at(-1), jumpLine(), "the jump is appended after the other tools' rules");
        deepStrictEqual(
          after.filter((line) => line.startsWith(`-A ${CHAIN} `)),
          chainRules(family),
        );
      }

      // Another tool appends after our jump (Docker restarting, say); we must not mind.
      for (const family of families) {
        await lab.ipt(family, [
          "-t",
          "nat",
          "-A",
          "POSTROUTING",
          "-o",
          "br-late",
          "-j",
          "MASQUERADE",
        ]);
      }
      const withLate = { ipv4: await fullSave(lab, "ipv4"), ipv6: await fullSave(lab, "ipv6") };
      await lab.tools.reset();
      assertExit(await lab.agent(["--once", "--enable-ipv6"]), 0, "--once with a later rule");
      deepStrictEqual(await launches(lab), steadyState, "a rule after our jump is not drift");
      for (const family of families) {
        deepStrictEqual(await fullSave(lab, family), withLate[family], `${family} untouched`);
      }

      assertExit(await lab.agent(["--cleanup"]), 0, "--cleanup");
      for (const family of families) {
        deepStrictEqual(
          await fullSave(lab, family),
          withoutOurs(withLate[family]),
          `${family}: cleanup removed only ours`,
        );
      }
    });
  });

  // 5. --cleanup: ours only, both families, every leftover, idempotent.
  netnsTest(`--cleanup removes our jumps and chains for both families (${backend})`, async () => {
    await withLab(backend, "cleanup", async (lab) => {
      await lab.restore("ipv4", foreignRules.ipv4);
      await lab.restore("ipv6", foreignRules.ipv6);
      const original = { ipv4: await fullSave(lab, "ipv4"), ipv6: await fullSave(lab, "ipv6") };
      await install(lab);
      // Leftovers of older installs: a quoted jump, and a chain of an earlier --masq-chain.
      for (const family of families) {
        // deno-fmt-ignore
        await lab.ipt(family, [
          "-t", "nat", "-A", "POSTROUTING", ...jumpArgs(CHAIN, `"${jumpComment(CHAIN)}"`),
        ]);
        await lab.restore(
          family,
          [
            "*nat",
            ":OLD-MASQ - [0:0]",
            returnLine(exemptions[family][1], "OLD-MASQ"),
            masqLine("OLD-MASQ"),
            jumpLine("OLD-MASQ"),
            "COMMIT",
            "",
          ].join("\n"),
        );
      }

      const first = await lab.agent(["--cleanup"]); // no --enable-ipv6: cleanup covers both
      assertExit(first, 0, "--cleanup");
      for (const family of families) {
        match(
          first.stderr,
          new RegExp(
            `cleanup \\(${family}, ${backend}\\): removing IP-MASQ-AGENT; removing OLD-MASQ`,
          ),
        );
      }
      for (const family of families) {
        deepStrictEqual(await fullSave(lab, family), original[family], `${family} as before`);
      }

      await lab.tools.reset();
      const second = await lab.agent(["--cleanup"]);
      assertExit(second, 0, "second --cleanup");
      for (const family of families) {
        match(
          second.stderr,
          new RegExp(`cleanup \\(${family}, ${backend}\\): nothing of ours to remove`),
        );
      }
      equal(await lab.tools.count(lab.agentTool("ipv4", "restore")), 0);
      equal(await lab.tools.count(lab.agentTool("ipv6", "restore")), 0);
      for (const family of families) {
        deepStrictEqual(await fullSave(lab, family), original[family], `${family} still as before`);
      }
    });
  });

  // 6. --check after each kind of drift, and repair by --once.
  netnsTest(`--check detects each drift and --once repairs it exactly (${backend})`, async () => {
    await withLab(backend, "check", async (lab) => {
      await install(lab);
      const check = await lab.agent(["--check", "--enable-ipv6"]);
      assertExit(check, 0, "--check in sync");
      equal(check.stdout.trim(), "in sync: ipv4, ipv6");

      for (const drift of drifts) {
        for (const family of families) await drift.apply(lab, family);
        const drifted = await lab.agent(["--check", "--enable-ipv6"]);
        assertExit(drifted, 1, `--check after "${drift.name}"`);
        for (const family of families) match(drifted.stdout, drift.message(family));

        await lab.tools.reset();
        const repair = await lab.agent(["--once", "--enable-ipv6"]);
        assertExit(repair, 0, `--once after "${drift.name}"`);
        deepStrictEqual(await launches(lab), {
          "iptables -S": 2,
          "ip6tables -S": 2,
          "iptables-restore": 1,
          "ip6tables-restore": 1,
        }, `one transaction per family repairs "${drift.name}"`);
        for (const family of families) {
          deepStrictEqual(await natLines(lab, family), freshNat(family), `${drift.name} repaired`);
        }
        assertExit(await lab.agent(["--check", "--enable-ipv6"]), 0, `--check after repair`);
      }

      await lab.writeConfig("nonMasqueradeCIDRs: [10.0.0.0/8]\nmasqLinkLocl: true\n");
      const invalid = await lab.agent(["--check", "--enable-ipv6"]);
      assertExit(invalid, 2, "--check with an invalid config");
      match(invalid.stderr, /\/etc\/config\/ip-masq-agent:2:1: masqLinkLocl: unknown key/);
    });
  });

  netnsTest(`running agent repairs each drift after SIGHUP (${backend})`, async () => {
    await withLab(backend, "sighup", async (lab) => {
      await lab.writeConfig(CONFIG);
      const agent = await lab.start(["--enable-ipv6", "--resync-interval=3600"]);
      try {
        await agent.waitForLog(/rules written \(ipv6\)/, 30_000);
        for (const [index, drift] of drifts.entries()) {
          for (const family of families) await drift.apply(lab, family);
          await agent.signalAgent("SIGHUP");
          await waitFor(
            `"drift repaired" after "${drift.name}"`,
            () =>
              families.every((family) =>
                countMatches(agent.stderr, new RegExp(`drift repaired \\(${family}\\)`)) > index
              ),
          );
          for (const family of families) {
            deepStrictEqual(
              await natLines(lab, family),
              freshNat(family),
              `${drift.name} repaired`,
            );
            const repaired = agent.stderr.split("\n").filter((line) =>
              line.includes(`drift repaired (${family})`)
            );
            equal(repaired.length, index + 1, "once per event");
            match(repaired[index], drift.message(family, "drift repaired \\(ipv[46]\\): "));
          }
        }

        // Steady state: a SIGHUP reconcile reads once per family and writes nothing.
        await lab.tools.reset();
        await agent.signalAgent("SIGHUP");
        await waitFor("the SIGHUP reconcile's reads", async () => {
          const counts = await launches(lab);
          return counts["iptables -S"] === 2 && counts["ip6tables -S"] === 2;
        });
        // A drift behind it proves the steady reconcile finished without a write.
        await lab.ipt("ipv4", ["-t", "nat", "-D", "POSTROUTING", ...jumpArgs()]);
        await agent.signalAgent("SIGHUP");
        await waitFor(
          "the drift after the steady reconcile",
          () => countMatches(agent.stderr, /drift repaired \(ipv4\)/) > drifts.length,
        );
        await waitFor(
          "the ipv6 read of the last reconcile",
          async () => (await launches(lab))["ip6tables -S"] === 4,
        );
        deepStrictEqual(await launches(lab), {
          "iptables -S": 4,
          "ip6tables -S": 4,
          "iptables-restore": 1,
          "ip6tables-restore": 0,
        });

        await agent.signalAgent("SIGTERM");
        const result = await agent.wait();
        equal(result.code, 0, `exit on SIGTERM:\n${result.stderr}`);
        for (const family of families) {
          deepStrictEqual(await natLines(lab, family), freshNat(family), "rules left in place");
        }
      } finally {
        agent.kill("SIGKILL");
        await agent.wait();
      }
    });
  });

  // 7. --masq-chain renamed between runs.
  netnsTest(
    `--masq-chain changed: old chain and jump removed, foreign chains kept (${backend})`,
    async () => {
      await withLab(backend, "rename", async (lab) => {
        await install(lab, ["--masq-chain=OLD-MASQ"]);
        for (const family of families) {
          deepStrictEqual(await natLines(lab, family), freshNat(family, "OLD-MASQ"));
        }
        const renamed = await lab.agent(["--once", "--enable-ipv6"]);
        assertExit(renamed, 0, "--once with the default chain");
        match(renamed.stderr, /removing OLD-MASQ, left by an earlier --masq-chain/);
        for (const family of families) {
          deepStrictEqual(
            await natLines(lab, family),
            freshNat(family),
            `${family}: only the new chain`,
          );
        }

        // Another tool's chain that happens to reuse the old name, with no jump of ours: untouched.
        // A chain we once jumped to, now holding someone else's rules: only our jump goes.
        // A chain we once jumped to that another rule still uses: only our jump goes.
        const foreign = { ipv4: "198.51.100.0/24", ipv6: "2001:db8:5::/48" };
        for (const family of families) {
          await lab.restore(
            family,
            [
              "*nat",
              ":OLD-MASQ - [0:0]",
              ":SHARED-MASQ - [0:0]",
              ":USED-MASQ - [0:0]",
              `-A OLD-MASQ -d ${foreign[family]} -j RETURN`,
              `-A SHARED-MASQ -d ${foreign[family]} -j RETURN`,
              jumpLine("SHARED-MASQ"),
              returnLine(exemptions[family][1], "USED-MASQ"),
              masqLine("USED-MASQ"),
              jumpLine("USED-MASQ"),
              "-A POSTROUTING -o eth7 -j USED-MASQ",
              "COMMIT",
              "",
            ].join("\n"),
          );
        }
        const before = { ipv4: await natLines(lab, "ipv4"), ipv6: await natLines(lab, "ipv6") };
        const again = await lab.agent(["--once", "--enable-ipv6"]);
        assertExit(again, 0, "--once with foreign chains of old names");
        for (const family of families) {
          const after = await natLines(lab, family);
          deepStrictEqual(
            after,
            before[family].filter((line) =>
              line !== jumpLine("SHARED-MASQ") && line !== jumpLine("USED-MASQ")
            ),
            `${family}: only our jumps to the old names were removed`,
          );
        }
        await lab.tools.reset();
        assertExit(await lab.agent(["--once", "--enable-ipv6"]), 0, "--once afterwards");
        deepStrictEqual(await launches(lab), steadyState, "foreign chains are not drift");
      });
    },
  );

  // 8. --to-ports and --random-fully as the real iptables saves them.
  netnsTest(`--to-ports and --random-fully rules are canonical (${backend})`, async () => {
    await withLab(backend, "toports", async (lab) => {
      await lab.writeConfig(CONFIG);
      const cases = [{
        args: ["--to-ports=1024-29999,32768-65535"],
        masquerade: () => [
          ...["tcp", "udp", "sctp"].flatMap((protocol) => [
            toPortsLine(protocol, "1024-29999", "0.46929256292", true),
            toPortsLine(protocol, "32768-65535", undefined, true),
          ]),
          masqLine(CHAIN, true),
        ],
      }, {
        args: ["--to-ports=1024-2047,5000,30000-65535", "--random-fully=false"],
        masquerade: () => [
          ...["tcp", "udp", "sctp"].flatMap((protocol) => [
            toPortsLine(protocol, "1024-2047", "0.02800798649", false),
            toPortsLine(protocol, "5000", "0.00002813991", false),
            toPortsLine(protocol, "30000-65535", undefined, false),
          ]),
          masqLine(CHAIN, false),
        ],
      }, {
        args: ["--random-fully=false"],
        masquerade: () => [masqLine(CHAIN, false)],
      }];
      for (const { args, masquerade } of cases) {
        const what = args.join(" ");
        await lab.tools.reset();
        assertExit(await lab.agent(["--once", "--enable-ipv6", ...args]), 0, `--once ${what}`);
        equal(await lab.tools.count(lab.agentTool("ipv6", "restore")), 1, `${what}: written`);
        for (const family of families) {
          const rules = [
            ...exemptions[family].map((cidr) => returnLine(cidr)),
            ...masquerade(),
          ];
          deepStrictEqual(await natLines(lab, family), freshNat(family, CHAIN, rules), what);
        }
        await lab.tools.reset();
        assertExit(await lab.agent(["--once", "--enable-ipv6", ...args]), 0, `again: ${what}`);
        deepStrictEqual(await launches(lab), steadyState, `${what}: in sync as saved`);
        const check = await lab.agent(["--check", "--enable-ipv6", ...args]);
        assertExit(check, 0, `--check ${what}`);
      }
    });
  });

  // The same proof for CIDR spellings iptables-save rewrites, and for "exempt everything"
  // (iptables-save drops a `-d 0.0.0.0/0`, so rendering it made every resync a rewrite).
  netnsTest(`CIDR spellings and /0 exemptions are saved as rendered (${backend})`, async () => {
    await withLab(backend, "spelling", async (lab) => {
      await lab.writeConfig([
        "nonMasqueradeCIDRs:",
        "  - 10.0.0.0/8",
        "  - 0.0.0.0/0",
        "  - 2001:0DB8::/32",
        "  - 2001:db8:0:0:1::/80",
        "  - 64:ff9b::10.0.0.0/120",
        "  - ::/0",
        "",
      ].join("\n"));
      assertExit(await lab.agent(["--once", "--enable-ipv6"]), 0, "--once");
      const everything = `-A ${CHAIN} -m comment --comment "${RETURN_COMMENT}" -j RETURN`;
      deepStrictEqual(
        await natLines(lab, "ipv4"),
        freshNat("ipv4", CHAIN, [
          returnLine("169.254.0.0/16"),
          returnLine("10.0.0.0/8"),
          everything,
          masqLine(),
        ]),
      );
      deepStrictEqual(
        await natLines(lab, "ipv6"),
        freshNat("ipv6", CHAIN, [
          returnLine("fe80::/10"),
          returnLine("2001:db8::/32"),
          returnLine("2001:db8:0:0:1::/80"),
          returnLine("64:ff9b::a00:0/120"),
          everything,
          masqLine(),
        ]),
      );
      await lab.tools.reset();
      assertExit(await lab.agent(["--once", "--enable-ipv6"]), 0, "second --once");
      deepStrictEqual(await launches(lab), steadyState, "in sync as saved");
      assertExit(await lab.agent(["--check", "--enable-ipv6"]), 0, "--check");
    });
  });

  // 10. An invalid config: exit 2, naming file, key and line; the live rules untouched.
  netnsTest(`invalid config exits 2 and leaves the rules untouched (${backend})`, async () => {
    await withLab(backend, "invalid", async (lab) => {
      const invalidConfigs = [{
        text: "# comment\nnonMasqueradeCIDRs:\n  - 10.0.0.0/8\n  - 10.0.0.1/8\n",
        message:
          /\/etc\/config\/ip-masq-agent:4:5: nonMasqueradeCIDRs\[1\]: invalid CIDR "10\.0\.0\.1\/8"/,
      }, {
        text: "nonMasqueradeCIDRs: [10.0.0.0/8]\nmasqLinkLocl: true\n",
        message:
          /\/etc\/config\/ip-masq-agent:2:1: masqLinkLocl: unknown key; did you mean "masqLinkLocal"\?/,
      }];
      // On a fresh node nothing is created.
      await lab.writeConfig(invalidConfigs[0].text);
      const fresh = await lab.agent(["--once", "--enable-ipv6"]);
      assertExit(fresh, 2, "--once with an invalid config on a fresh node");
      for (const family of families) {
        ok(!(await natLines(lab, family)).some((line) => line.includes(CHAIN)), "nothing written");
      }

      await lab.restore("ipv4", foreignRules.ipv4);
      await lab.restore("ipv6", foreignRules.ipv6);
      await install(lab);
      const installed = { ipv4: await fullSave(lab, "ipv4"), ipv6: await fullSave(lab, "ipv6") };
      for (const config of invalidConfigs) {
        await lab.writeConfig(config.text);
        for (const mode of [["--once"], ["--check"], []]) {
          await lab.tools.reset();
          const result = await lab.agent([...mode, "--enable-ipv6"]);
          assertExit(result, 2, `${mode.join(" ") || "run"} with an invalid config`);
          match(result.stderr, config.message);
          equal(await lab.tools.count(lab.agentTool("ipv6", "restore")), 0);
          equal(await lab.tools.count(lab.agentTool("ipv6", "restore")), 0);
          for (const family of families) {
            deepStrictEqual(await fullSave(lab, family), installed[family], `${family} untouched`);
          }
        }
      }
    });
  });
}

function toPortsLine(
  protocol: string,
  ports: string,
  probability: string | undefined,
  randomFully: boolean,
) {
  const statistic = probability === undefined
    ? ""
    : ` -m statistic --mode random --probability ${probability}`;
  return `-A ${CHAIN} -p ${protocol} -m comment --comment "${MASQ_COMMENT}"${statistic} ` +
    `-j MASQUERADE --to-ports ${ports}` + (randomFully ? " --random-fully" : "");
}

interface DriftCase {
  readonly name: string;
  apply(lab: Lab, family: Family): Promise<void>;
  /** What --check prints (and "drift repaired" logs) for it, after `prefix`. */
  message(family: Family, prefix?: string): RegExp;
}

const edited = { ipv4: "10.0.0.0/16", ipv6: "fd00::/16" };
const inserted = { ipv4: "203.0.113.0/24", ipv6: "2001:db8:1::/48" };
const esc = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
const reported = (family: Family, prefix: string | undefined, text: string) =>
  new RegExp(`${prefix ?? `${family}: `}${text}`);

const drifts: readonly DriftCase[] = [{
  name: "jump deleted",
  apply: async (lab, family) => {
    await lab.ipt(family, ["-t", "nat", "-D", "POSTROUTING", ...jumpArgs()]);
  },
  message: (family, prefix) => reported(family, prefix, `POSTROUTING has no jump to ${CHAIN}`),
}, {
  name: "chain flushed",
  apply: async (lab, family) => {
    await lab.ipt(family, ["-t", "nat", "-F", CHAIN]);
  },
  message: (family, prefix) =>
    reported(
      family,
      prefix,
      `chain ${CHAIN} differs \\(4 missing: ${CHAIN} -d ${esc(exemptions[family][0])} `,
    ),
}, {
  name: "rule edited",
  apply: async (lab, family) => {
    // deno-fmt-ignore
    await lab.ipt(family, [
      "-t", "nat", "-R", CHAIN, "2", "-d", edited[family], "-m", "comment", "--comment",
      RETURN_COMMENT, "-j", "RETURN",
    ]);
  },
  message: (family, prefix) =>
    reported(
      family,
      prefix,
      `chain ${CHAIN} differs \\(1 missing: ${CHAIN} -d ${esc(exemptions[family][1])} .*; ` +
        `1 unexpected: ${CHAIN} -d ${esc(edited[family])} `,
    ),
}, {
  name: "rule inserted",
  apply: async (lab, family) => {
    await lab.ipt(family, ["-t", "nat", "-I", CHAIN, "1", "-d", inserted[family], "-j", "RETURN"]);
  },
  message: (family, prefix) =>
    reported(
      family,
      prefix,
      `chain ${CHAIN} differs \\(1 unexpected: ${CHAIN} -d ${esc(inserted[family])} -j RETURN\\)`,
    ),
}, {
  name: "second jump added",
  apply: async (lab, family) => {
    await lab.ipt(family, ["-t", "nat", "-A", "POSTROUTING", ...jumpArgs()]);
  },
  message: (family, prefix) =>
    reported(family, prefix, `POSTROUTING has a duplicate jump to ${CHAIN}`),
}];

/** What kube-proxy, Docker and a CNI plugin leave on a node, in nat, filter and mangle. */
const foreignRules: Record<Family, string> = {
  ipv4: [
    "*nat",
    ":KUBE-POSTROUTING - [0:0]",
    ":KUBE-MARK-MASQ - [0:0]",
    ":CNI-4a1b2c3d4e5f60718293a4b5 - [0:0]",
    ":DOCKER - [0:0]",
    "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
    "-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER",
    '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
    "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
    '-A POSTROUTING -s 10.244.1.5/32 -m comment --comment "name: \\"cbr0\\" id: \\"0123abcd\\"" -j CNI-4a1b2c3d4e5f60718293a4b5',
    "-A DOCKER -i docker0 -j RETURN",
    "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
    "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
    "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
    '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
    '-A CNI-4a1b2c3d4e5f60718293a4b5 -d 10.244.1.0/24 -m comment --comment "name: \\"cbr0\\" id: \\"0123abcd\\"" -j ACCEPT',
    '-A CNI-4a1b2c3d4e5f60718293a4b5 ! -d 224.0.0.0/4 -m comment --comment "name: \\"cbr0\\" id: \\"0123abcd\\"" -j MASQUERADE',
    "COMMIT",
    "*filter",
    ":DOCKER-USER - [0:0]",
    ":KUBE-FIREWALL - [0:0]",
    "-A INPUT -j KUBE-FIREWALL",
    "-A FORWARD -j DOCKER-USER",
    "-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    "-A DOCKER-USER -j RETURN",
    '-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP',
    "COMMIT",
    "*mangle",
    ":KUBE-IPTABLES-HINT - [0:0]",
    "-A POSTROUTING -o eth0 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu",
    "COMMIT",
    "",
  ].join("\n"),
  ipv6: [
    "*nat",
    ":KUBE-POSTROUTING - [0:0]",
    ":DOCKER - [0:0]",
    "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
    '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
    "-A POSTROUTING -s fd00:17::/64 ! -o docker0 -j MASQUERADE",
    "-A DOCKER -i docker0 -j RETURN",
    "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
    "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
    '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
    "COMMIT",
    "*filter",
    ":DOCKER-USER - [0:0]",
    "-A FORWARD -j DOCKER-USER",
    "-A FORWARD -p ipv6-icmp -j ACCEPT",
    "-A DOCKER-USER -j RETURN",
    "COMMIT",
    "",
  ].join("\n"),
};
