import assert from "node:assert/strict";
import { type DesiredChain, orderedRules } from "../../lib/policy/chain.ts";
import { parseBuiltInCidr } from "../../lib/net/cidr.ts";

const at = { file: "/etc/config/ip-masq-agent", line: 1 };
const located = (text: string) => ({ value: parseBuiltInCidr(text), at });

function chain(exemptions: string[], exceptions: string[]): DesiredChain {
  return {
    family: "ipv4",
    chain: "IP-MASQ-AGENT",
    exemptions: exemptions.map(located),
    masqueradeExceptions: exceptions.map(located),
    masquerade: { randomFully: false, toPorts: [] },
  };
}

const order = (desired: DesiredChain) =>
  orderedRules(desired).map(({ action, cidr }) => `${action} ${cidr.value.text}`);

Deno.test("orderedRules moves an exception up to the exemption it narrows and keeps the rest in configuration order (not a sort by prefix length)", () => {
  const desired = chain(["10.0.0.0/8", "192.168.1.0/24"], ["10.1.0.0/16"]);
  assert.deepEqual(order(desired), [
    "masquerade 10.1.0.0/16",
    "return 10.0.0.0/8",
    "return 192.168.1.0/24",
  ]);
  // A stable sort by prefix length also gives longest-prefix semantics, but another chain text:
  // every install with exceptions would have its chain rewritten on upgrade.
  const byPrefix = orderedRules(desired).toSorted((a, b) =>
    b.cidr.value.prefix - a.cidr.value.prefix
  )
    .map(({ action, cidr }) => `${action} ${cidr.value.text}`);
  assert.notDeepEqual(byPrefix, order(desired));
});

Deno.test("orderedRules without exceptions is the exemptions' order, whatever their prefixes", () => {
  const desired = chain(["10.0.0.0/8", "10.1.2.0/24", "192.168.0.0/16"], []);
  assert.deepEqual(order(desired), [
    "return 10.0.0.0/8",
    "return 10.1.2.0/24",
    "return 192.168.0.0/16",
  ]);
});

Deno.test("orderedRules nests at any depth: the innermost of differing actions first", () => {
  const desired = chain(["10.0.0.0/8", "10.1.2.0/24"], ["10.1.0.0/16"]);
  assert.deepEqual(order(desired), [
    "return 10.1.2.0/24",
    "masquerade 10.1.0.0/16",
    "return 10.0.0.0/8",
  ]);
});
