import assert from "node:assert/strict";
import { Agent } from "../../lib/agent/agent.ts";
import { defaultFlags } from "../../lib/settings/flags.ts";
import type { ConfigDirContents } from "../../lib/config/parse.ts";
import { loadConfig } from "../../lib/policy/desired.ts";
import { iptablesDataplane } from "../../lib/iptables/dataplane.ts";
import { FakeNatTable } from "../support/fake_iptables.ts";
import { CaptureLog } from "../support/capture_log.ts";

const path = "/etc/config/ip-masq-agent";
const contentsOf = (text: string): ConfigDirContents => ({
  kind: "files",
  files: [{ path, bytes: new TextEncoder().encode(text) }],
});
const read = contentsOf("nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n");
// A load that the bytes read would not give: seeing it applied proves it was taken as it is.
const handedOver = loadConfig(contentsOf("nonMasqueradeCIDRs:\n  - 192.168.0.0/16\n"), {
  ...defaultFlags,
});

async function firstReconcile(startupContents: ConfigDirContents): Promise<string[]> {
  const fake = new FakeNatTable({ family: "ipv4" });
  const agent = new Agent({
    flags: defaultFlags,
    log: new CaptureLog(),
    readConfigDir: () => Promise.resolve(read),
    dataplane: iptablesDataplane(
      { ipv4: fake, ipv6: new FakeNatTable({ family: "ipv6" }) },
      defaultFlags.masqChain,
    ),
    randomFullySupported: { ipv4: true, ipv6: true },
    startupLoad: { contents: startupContents, loaded: handedOver },
  });
  assert.equal(await agent.once(new AbortController().signal), 0);
  return fake.rules(defaultFlags.masqChain);
}

Deno.test("the first reconcile takes main.ts's start-up load when it reads the same bytes", async () => {
  const rules = await firstReconcile(read);
  assert.ok(rules.some((rule) => rule.includes("192.168.0.0/16")), rules.join("\n"));
});

Deno.test("the first reconcile loads afresh when the bytes changed since start-up", async () => {
  const rules = await firstReconcile(contentsOf("nonMasqueradeCIDRs:\n  - 172.16.0.0/12\n"));
  assert.ok(rules.some((rule) => rule.includes("10.0.0.0/8")), rules.join("\n"));
  assert.ok(!rules.some((rule) => rule.includes("192.168.0.0/16")), rules.join("\n"));
});
