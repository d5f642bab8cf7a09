import assert from "node:assert/strict";
import { chooseMode, otherBackendPresent } from "../../lib/iptables/mode_detection.ts";
import { FakeExec } from "../support/fake_exec.ts";

const noChain = { code: 1, stdout: "", stderr: "iptables: No chain/target/match by that name.\n" };

/**
 * A node: nft chains per `<tool> <table>` (as `-S` listings), and the legacy
 * dumps (`iptables-legacy-save` of the loaded tables) per tool.
 */
function node(nft: Record<string, string>, legacy: Record<string, string> = {}) {
  const fake = new FakeExec().on((call) => {
    if (call.command.endsWith("-legacy-save")) {
      return { code: 0, stdout: legacy[call.command] ?? "", stderr: "" };
    }
    const [flag, table, list, chain] = call.args;
    if (flag !== "-t" || list !== "-S") return undefined;
    const text = nft[`${call.command} ${table}`];
    if (text === undefined) return noChain;
    if (chain === undefined) return { code: 0, stdout: text, stderr: "" };
    return text.includes(`-N ${chain}\n`)
      ? { code: 0, stdout: `-N ${chain}\n`, stderr: "" }
      : noChain;
  });
  return { fake, deps: { exec: fake.exec } };
}

const legacyHint = "*mangle\n:PREROUTING ACCEPT [0:0]\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n";

Deno.test("an explicit --iptables-mode runs nothing", async () => {
  const { fake, deps } = node({});
  assert.deepEqual(await chooseMode("legacy", deps), {
    mode: "legacy",
    evidence: "--iptables-mode=legacy",
  });
  assert.deepEqual(fake.calls, []);
});

Deno.test("kubelet's hint in nft: one launch, legacy never asked", async () => {
  const { fake, deps } = node({ "iptables-nft mangle": "-N KUBE-IPTABLES-HINT\n" }, {
    "iptables-legacy-save": legacyHint,
  });
  const decision = await chooseMode("auto", deps);
  assert.equal(decision.mode, "nft");
  assert.deepEqual(fake.lines, ["iptables-nft -t mangle -S KUBE-IPTABLES-HINT"]);
});

Deno.test("an older kubelet's canary counts as the hint too", async () => {
  const { deps } = node({ "ip6tables-nft mangle": "-N KUBE-KUBELET-CANARY\n" });
  assert.equal((await chooseMode("auto", deps)).mode, "nft");
});

Deno.test("kubelet's hint in legacy, read from the dump of tables already loaded", async () => {
  const { fake, deps } = node({}, { "iptables-legacy-save": legacyHint });
  assert.deepEqual(await chooseMode("auto", deps), {
    mode: "legacy",
    evidence: "kubelet's hint chain in the legacy ipv4 mangle table",
  });
  assert.deepEqual(fake.lines, [
    "iptables-nft -t mangle -S KUBE-IPTABLES-HINT",
    "iptables-nft -t mangle -S KUBE-KUBELET-CANARY",
    "ip6tables-nft -t mangle -S KUBE-IPTABLES-HINT",
    "ip6tables-nft -t mangle -S KUBE-KUBELET-CANARY",
    "iptables-legacy-save",
  ]);
  assert.ok(
    !fake.lines.some((line) => line.startsWith("iptables-legacy ")),
    "no legacy listing that would load a table",
  );
});

Deno.test("no hint: the backend holding more rules wins, nft on a tie", async () => {
  const legacyRules = node({}, {
    "iptables-legacy-save":
      "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j MASQUERADE\nCOMMIT\n",
  });
  assert.deepEqual(await chooseMode("auto", legacyRules.deps), {
    mode: "legacy",
    evidence: "no kubelet hint; 0 nft rules, 1 legacy rules",
  });
  assert.deepEqual(legacyRules.fake.lines.slice(-3), [
    "iptables-nft -t nat -S",
    "iptables-nft -t filter -S",
    "iptables-nft -t mangle -S",
  ]);
  const empty = node({});
  assert.equal((await chooseMode("auto", empty.deps)).mode, "nft");
});

Deno.test("the other backend counts as present: nft always, legacy when its nat table is loaded", async () => {
  const { deps } = node({}, {
    "ip6tables-legacy-save": "*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n",
    "iptables-legacy-save": legacyHint,
  });
  assert.equal(await otherBackendPresent("nft", "ipv4", deps), true);
  assert.equal(await otherBackendPresent("legacy", "ipv4", deps), false, "mangle only: no nat");
  assert.equal(await otherBackendPresent("legacy", "ipv6", deps), true);
});

Deno.test("issue 15: reads that fail are said to have failed, not counted as 0 rules", async () => {
  const denied = {
    code: 4,
    stdout: "",
    stderr: "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: " +
      "Permission denied (you must be root)\n",
  };
  const fake = new FakeExec().on(() => denied);
  const decision = await chooseMode("auto", { exec: fake.exec });
  assert.equal(decision.mode, "nft");
  assert.match(
    decision.evidence,
    /reading failed \(iptables-nft -t mangle -S KUBE-IPTABLES-HINT: /,
  );
  assert.match(decision.evidence, /Permission denied \(you must be root\)/);
  assert.match(decision.evidence, /iptables-legacy-save: /);
  assert.match(decision.evidence, /the counts are of what could be read/);

  // A node that answers, without a hint: the plain tally, no failure talk.
  const { deps } = node({ "iptables-nft nat": "-P POSTROUTING ACCEPT\n-A POSTROUTING -j X\n" });
  const plain = await chooseMode("auto", deps);
  assert.equal(plain.evidence, "no kubelet hint; 1 nft rules, 0 legacy rules");
});

Deno.test("the legacy dump is read as a stream, kept as a summary, and stopped once answered", async () => {
  // Issue 15 item 7: beside kube-proxy's 50,000 legacy rules the dump is megabytes; kept whole
  // it doubled the agent's RSS. The hint question stops at the hint, the nat question at *nat.
  const chunks = [
    "*mangle\n:PREROUTING ACCEPT [0:0]\n:KUBE-IPTA",
    "BLES-HINT - [0:0]\nCOMMIT\n*nat\n",
    "-A POSTROUTING -j MASQUERADE\n".repeat(1000),
    "COMMIT\n",
  ];
  const read: number[] = [];
  const scan = (command: string, _args: readonly string[], onText: (text: string) => boolean) => {
    assert.equal(command, "iptables-legacy-save");
    for (const [index, chunk] of chunks.entries()) {
      read.push(index);
      if (onText(chunk)) return Promise.resolve({ code: 143, stderr: "", stopped: true });
    }
    return Promise.resolve({ code: 0, stderr: "", stopped: false });
  };
  const { deps } = node({});
  assert.deepEqual(await chooseMode("auto", { ...deps, scan }), {
    mode: "legacy",
    evidence: "kubelet's hint chain in the legacy ipv4 mangle table",
  });
  assert.deepEqual(read, [0, 1], "stopped at the chunk holding the hint");
  read.length = 0;
  assert.equal(await otherBackendPresent("legacy", "ipv4", { ...deps, scan }), true);
  assert.deepEqual(read, [0, 1], "stopped at *nat");
});
