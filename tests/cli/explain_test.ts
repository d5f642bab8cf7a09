/**
 * `--explain`'s reasoning (lib/cli/explain.ts, lib/iptables/live_trace.ts): one
 * case per kind of answer the configuration gives, and the live comparison
 * against in-sync, drifted and hostile nat tables (rules of other tools,
 * matches it cannot evaluate, garbage).
 *
 * @module
 */

import assert from "node:assert/strict";
import { type IpAddress, parseIpAddress } from "../../lib/net/address.ts";
import { desiredChains, loadConfig } from "../../lib/policy/desired.ts";
import {
  explain,
  type Explanation,
  explanationObject,
  formatExplanation,
  type LiveTableView,
} from "../../lib/cli/explain.ts";
import { defaultFlags } from "../../lib/settings/flags.ts";
import { traceLive } from "../../lib/iptables/live_trace.ts";
import { chainRuleLines, jumpRuleLine } from "../../lib/iptables/render.ts";
import { parseNatTable } from "../../lib/iptables/plan.ts";

const path = "/etc/config/ip-masq-agent";
const config = `nonMasqueradeCIDRs:
  - 10.0.0.0/8
  - 192.168.0.0/16
masqueradeCIDRs:
  - 10.1.0.0/16
nonMasqueradeSrcCIDRs:
  - 10.245.0.0/16
`;

function address(text: string): IpAddress {
  const parsed = parseIpAddress(text);
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.value;
}

function setup(text: string | undefined, flags = { ...defaultFlags }) {
  const loaded = loadConfig(
    text === undefined
      ? { kind: "missing" }
      : { kind: "files", files: [{ path, bytes: new TextEncoder().encode(text) }] },
    flags,
  );
  const desired = desiredChains(loaded.effective, flags, { ipv4: true, ipv6: true });
  return { loaded, desired };
}

function ask(
  text: string | undefined,
  destination: string,
  options: { source?: string; live?: LiveTableView; flags?: typeof defaultFlags } = {},
): Explanation {
  const { loaded, desired } = setup(text, options.flags);
  return explain({
    effective: loaded.effective,
    desired,
    destination: address(destination),
    source: options.source === undefined ? undefined : address(options.source),
    live: options.live ?? { kind: "unavailable", reason: "not read in this test" },
  });
}

// ---------------------------------------------------------------------------
// The configuration's answer, one case per kind

Deno.test("defaults: a private destination keeps its source, named as the default", () => {
  const answer = ask(undefined, "10.1.2.3");
  assert.equal(answer.decision?.verdict, "keep source");
  assert.equal(answer.because, "default (no config file present): 10.0.0.0/8 (RFC 1918)");
  assert.equal(answer.key, "nonMasqueradeCIDRs");
  const other = ask(undefined, "8.8.8.8");
  assert.equal(other.decision?.verdict, "masquerade");
  assert.match(other.because, /^default \(no config file present\): in none of the default/);
});

Deno.test("a configured CIDR decides, with its file, line and key", () => {
  const answer = ask(config, "10.2.3.4", { source: "10.244.1.2" });
  assert.equal(answer.decision?.verdict, "keep source");
  assert.equal(answer.because, `nonMasqueradeCIDRs 10.0.0.0/8 at ${path}:2:5`);
  const object = explanationObject(answer);
  assert.deepEqual(object.because, {
    kind: "non-masquerade",
    text: `nonMasqueradeCIDRs 10.0.0.0/8 at ${path}:2:5`,
    key: "nonMasqueradeCIDRs",
    cidr: "10.0.0.0/8",
    file: path,
    line: 2,
    column: 5,
  });
  assert.equal(object.verdict, "keep source");
  assert.equal(object.source, "10.244.1.2");
});

Deno.test("an exception decides inside its non-masquerade range: the longer prefix", () => {
  const answer = ask(config, "10.1.2.3", { source: "10.244.1.2" });
  assert.equal(answer.decision?.verdict, "masquerade");
  assert.equal(
    answer.because,
    `masqueradeCIDRs 10.1.0.0/16 at ${path}:5:5, inside nonMasqueradeCIDRs 10.0.0.0/8 at ` +
      `${path}:2:5 (the longest prefix decides)`,
  );
  assert.equal(answer.key, "masqueradeCIDRs");
});

Deno.test("a source exemption decides before everything, given --explain-source", () => {
  const answer = ask(config, "8.8.8.8", { source: "10.245.0.9" });
  assert.equal(answer.decision?.verdict, "keep source");
  assert.equal(
    answer.because,
    `nonMasqueradeSrcCIDRs 10.245.0.0/16 at ${path}:7:5 holds the source`,
  );
  const unknown = ask(config, "8.8.8.8");
  assert.equal(unknown.decision?.verdict, "masquerade");
  assert.match(unknown.notes[0], /unless the pod's address is in nonMasqueradeSrcCIDRs \(10\.245/);
});

Deno.test("link-local, local destination, no range and a disabled family", () => {
  const linkLocal = ask(config, "169.254.169.254");
  assert.equal(linkLocal.decision?.verdict, "keep source");
  assert.equal(
    linkLocal.because,
    "link-local: 169.254.0.0/16 keeps the source unless masqLinkLocal is true",
  );
  const local = ask(config, "127.0.0.1");
  assert.equal(local.decision?.because.kind, "local-destination");
  assert.equal(local.decision?.verdict, "keep source");
  const none = ask(config, "100.64.0.1", { source: "10.244.1.2" });
  assert.equal(none.decision?.verdict, "masquerade");
  assert.equal(
    none.because,
    `in no nonMasqueradeCIDRs range of ${path}, so the last rule masquerades it`,
  );
  const v6 = ask(config, "2001:db8::1");
  assert.equal(v6.decision, undefined);
  assert.match(v6.because, /IPv6 is not enabled/);
  assert.match(formatExplanation(v6), /^2001:db8::1 \(ipv6\): not managed$/m);
  const enabled = ask("nonMasqueradeCIDRs: [fd00::/8]\n", "fe80::1", {
    flags: { ...defaultFlags, enableIpv6: true },
  });
  assert.equal(
    enabled.because,
    "link-local: fe80::/10 keeps the source unless masqLinkLocalIPv6 is true",
  );
});

// ---------------------------------------------------------------------------
// The live comparison

const { desired } = setup(config);
const chain = desired[0];
const jump = jumpRuleLine("IP-MASQ-AGENT");

function live(
  postrouting: readonly string[],
  ours: readonly string[] | null = chainRuleLines(chain),
) {
  const listing = [
    "-P POSTROUTING ACCEPT",
    ...postrouting,
    ...(ours === null ? [] : ["-N IP-MASQ-AGENT", ...ours]),
  ].join("\n");
  return { kind: "read", backend: "iptables nft", table: parseNatTable(listing) } as const;
}

function liveOf(answer: Explanation) {
  assert.notEqual(answer.live.status, "unavailable");
  if (answer.live.status === "unavailable") throw new Error("unreachable");
  return answer.live;
}

Deno.test("live in sync: the same answer, decided by our rule", () => {
  for (const [destination, verdict] of [["10.1.2.3", "masquerade"], ["10.2.0.1", "keep source"]]) {
    const answer = liveOf(ask(config, destination, { source: "10.244.1.2", live: live([jump]) }));
    assert.equal(answer.status, "agrees", destination);
    assert.deepEqual(answer.verdicts, [verdict]);
    assert.match(answer.decidedBy, /^-A IP-MASQ-AGENT /);
    assert.deepEqual(answer.drift, []);
  }
});

Deno.test("live: our jump missing", () => {
  const answer = liveOf(ask(config, "8.8.8.8", { source: "10.244.1.2", live: live([]) }));
  assert.equal(answer.status, "differs");
  assert.deepEqual(answer.verdicts, ["keep source"]);
  assert.match(
    answer.reasons[0],
    /our jump is missing or misplaced \(POSTROUTING has no jump to IP-MASQ-AGENT\)/,
  );
});

Deno.test("live: our jump duplicated is reported even when the answer agrees", () => {
  const answer = liveOf(ask(config, "8.8.8.8", { source: "10.244.1.2", live: live([jump, jump]) }));
  assert.equal(answer.status, "agrees");
  assert.deepEqual(answer.drift, ["POSTROUTING has a duplicate jump to IP-MASQ-AGENT"]);
});

Deno.test("live: our chain drifted (the exception was deleted)", () => {
  const drifted = chainRuleLines(chain).filter((line) => !line.includes("10.1.0.0/16"));
  const answer = liveOf(ask(config, "10.1.2.3", {
    source: "10.244.1.2",
    live: live([jump], drifted),
  }));
  assert.equal(answer.status, "differs");
  assert.match(
    answer.reasons[0],
    /^our chain IP-MASQ-AGENT drifted \(chain IP-MASQ-AGENT differs \(1 missing: .*10\.1\.0\.0\/16.*\): -A IP-MASQ-AGENT -d 10\.0\.0\.0\/8 .* decides$/,
  );
});

Deno.test("live: a MASQUERADE of another tool before our jump decides first", () => {
  const docker = "-A POSTROUTING -s 10.244.0.0/16 ! -o docker0 -j MASQUERADE";
  const withSource = liveOf(ask(config, "10.2.0.1", {
    source: "10.244.1.2",
    live: live(["-A POSTROUTING -s 10.244.0.0/16 -j MASQUERADE", jump]),
  }));
  assert.equal(withSource.status, "differs");
  assert.equal(
    withSource.reasons[0],
    "a POSTROUTING rule of another tool before our jump decides first: " +
      "-A POSTROUTING -s 10.244.0.0/16 -j MASQUERADE",
  );
  // A source outside its -s: the rule does not match, our answer stands.
  const other = liveOf(
    ask(config, "10.2.0.1", { source: "10.250.0.1", live: live([docker, jump]) }),
  );
  assert.equal(other.status, "agrees");
  // The interface it leaves by is not known: the rule may decide first.
  const maybe = liveOf(
    ask(config, "10.2.0.1", { source: "10.244.1.2", live: live([docker, jump]) }),
  );
  assert.equal(maybe.status, "uncertain");
  assert.match(maybe.reasons[0], /^may decide first: cannot evaluate ! -o docker0 \(the interface/);
});

Deno.test("live: ACCEPT or RETURN of another tool before our jump keeps the source", () => {
  for (const target of ["ACCEPT", "RETURN"]) {
    const answer = liveOf(ask(config, "8.8.8.8", {
      source: "10.244.1.2",
      live: live([
        `-A POSTROUTING -d 8.8.8.0/24 -m comment --comment "dns, \\"direct\\"" -j ${target}`,
        jump,
      ]),
    }));
    assert.equal(answer.status, "differs", target);
    assert.deepEqual(answer.verdicts, ["keep source"]);
  }
});

Deno.test("live: -m mark, a user chain and an unknown target may decide first", () => {
  const cases: [string, RegExp][] = [
    [
      "-A POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE",
      /^may decide first: cannot evaluate -m mark --mark 0x4000\/0x4000 \(before our jump\)/,
    ],
    [
      '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
      /^may decide first: jumps to chain KUBE-POSTROUTING, which --explain does not read/,
    ],
    ["-A POSTROUTING -p tcp -j ACCEPT", /cannot evaluate -p tcp \(depends on the protocol\)/],
    [
      "-A POSTROUTING -m conntrack --ctstate DNAT -j ACCEPT",
      /cannot evaluate -m conntrack --ctstate DNAT/,
    ],
  ];
  for (const [rule, reason] of cases) {
    // A destination whose answer the rule would change: kept (10.2.0.1) against MASQUERADE.
    const destination = rule.endsWith("MASQUERADE") ? "10.2.0.1" : "8.8.8.8";
    const answer = liveOf(
      ask(config, destination, { source: "10.244.1.2", live: live([rule, jump]) }),
    );
    assert.equal(answer.status, "uncertain", rule);
    assert.ok(answer.reasons.some((text) => reason.test(text)), `${rule}: ${answer.reasons}`);
  }
});

Deno.test("live: a later MASQUERADE still applies after our chain returns", () => {
  const answer = liveOf(ask(config, "10.2.0.1", {
    source: "10.244.1.2",
    live: live([jump, "-A POSTROUTING -s 10.244.0.0/16 -j MASQUERADE"]),
  }));
  assert.equal(answer.status, "differs");
  assert.match(
    answer.reasons[0],
    /^our chain IP-MASQ-AGENT returns, then a later POSTROUTING rule/,
  );
});

Deno.test("live: addrtype, negation and -o + are evaluated", () => {
  const packet = {
    destination: address("8.8.8.8"),
    source: address("10.244.1.2"),
    localDestination: false,
  };
  const verdictOf = (rule: string) =>
    traceLive(parseNatTable(`-P POSTROUTING ACCEPT\n${rule}`), "IP-MASQ-AGENT", packet).map((o) =>
      o.verdict
    );
  assert.deepEqual(verdictOf("-A POSTROUTING -m addrtype --dst-type LOCAL -j MASQUERADE"), [
    "keep source",
  ]);
  assert.deepEqual(verdictOf("-A POSTROUTING -m addrtype ! --dst-type LOCAL -j MASQUERADE"), [
    "masquerade",
  ]);
  assert.deepEqual(verdictOf("-A POSTROUTING -m addrtype --dst-type UNICAST,LOCAL -j MASQUERADE"), [
    "masquerade",
  ]);
  assert.deepEqual(verdictOf("-A POSTROUTING ! -s 10.244.0.0/16 -j MASQUERADE"), ["keep source"]);
  assert.deepEqual(verdictOf("-A POSTROUTING ! -d 8.8.0.0/16 -j MASQUERADE"), ["keep source"]);
  assert.deepEqual(verdictOf("-A POSTROUTING -o + -j MASQUERADE"), ["masquerade"]);
  assert.deepEqual(verdictOf("-A POSTROUTING -d 8.8.8.8/32 -j LOG --log-prefix x"), [
    "keep source",
  ]);
  assert.deepEqual(verdictOf("-A POSTROUTING -m addrtype --dst-type BLACKHOLE -j MASQUERADE"), [
    "masquerade",
    "keep source",
  ]);
});

Deno.test("live: hostile listings never throw and never claim certainty they do not have", () => {
  const hostile = [
    '-A POSTROUTING -m comment --comment "unterminated -j MASQUERADE',
    "-A POSTROUTING -s not-an-address -j MASQUERADE",
    "-A POSTROUTING -d",
    "-A POSTROUTING !",
    "-A POSTROUTING -j",
    "-A POSTROUTING --weird-option x -j MASQUERADE",
    "-A POSTROUTING -m set --match-set KUBE-X dst,dst -j MASQUERADE",
    "-A POSTROUTING -g SOME-CHAIN",
    "-A POSTROUTING -m addrtype --limit-iface-out --dst-type UNICAST -j MASQUERADE",
    "-A POSTROUTING -j IP-MASQ-AGENT",
    "-A POSTROUTING \u202e-j MASQUERADE",
    "garbage line",
  ];
  for (const rule of hostile) {
    const answer = ask(config, "10.2.0.1", { source: "10.244.1.2", live: live([rule, jump]) });
    const result = liveOf(answer);
    assert.ok(["agrees", "differs", "uncertain"].includes(result.status), rule);
    assert.doesNotThrow(() => JSON.stringify(explanationObject(answer)));
    if (/set|weird|not-an-address|limit-iface|SOME-CHAIN/.test(rule)) {
      assert.notEqual(result.status, "agrees", `${rule}: ${JSON.stringify(result)}`);
    }
  }
});

Deno.test("live unavailable: the config answer stands, with the reason", () => {
  const answer = ask(config, "10.1.2.3", {
    source: "10.244.1.2",
    live: { kind: "unavailable", reason: "cannot read the live nat table: iptables-nft not found" },
  });
  assert.equal(answer.decision?.verdict, "masquerade");
  const text = formatExplanation(answer);
  assert.match(text, /^10\.1\.2\.3 from 10\.244\.1\.2 \(ipv4\): masquerade$/m);
  assert.match(
    text,
    /^ {2}live: not compared: cannot read the live nat table: iptables-nft not found$/m,
  );
});

Deno.test("issue 15: without --explain-source the live answer credits the rule deciding for every source", () => {
  const text = "nonMasqueradeCIDRs: [10.0.0.0/8]\nnonMasqueradeSrcCIDRs: [10.250.0.0/16]\n";
  const { desired } = setup(text);
  const table = live([jumpRuleLine("IP-MASQ-AGENT")], chainRuleLines(desired[0]));
  const answer = liveOf(ask(text, "10.1.1.1", { live: table }));
  assert.equal(answer.status, "agrees");
  assert.match(answer.decidedBy, /^-A IP-MASQ-AGENT -d 10\.0\.0\.0\/8 /);
  assert.doesNotMatch(answer.decidedBy, /-s 10\.250/);
  // Given a source inside the exemption, the -s rule does decide.
  const from = liveOf(ask(text, "10.1.1.1", { source: "10.250.1.1", live: table }));
  assert.match(from.decidedBy, /^-A IP-MASQ-AGENT -s 10\.250\.0\.0\/16 /);
  // Outside every exemption only a source in 10.250/16 keeps it: the answer depends on it.
  const outside = liveOf(ask(text, "8.8.8.8", { live: table }));
  assert.equal(outside.status, "uncertain");
  assert.match(formatExplanation(ask(text, "8.8.8.8", { live: table })), /give --explain-source/);
});
