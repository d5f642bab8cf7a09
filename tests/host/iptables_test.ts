import assert from "node:assert/strict";
import { isLockContention, parseVersion } from "../../lib/host/iptables.ts";

Deno.test("the legacy backend's lock messages are recognised as lock contention", () => {
  for (
    const stderr of [
      "Another app is currently holding the xtables lock. Stopped waiting after 5s.",
      "Another app is currently holding the xtables lock; still 4s 0us time ahead to have a chance to grab the lock...",
    ]
  ) {
    assert.ok(isLockContention(stderr), stderr);
  }
});

Deno.test("other failures, even with exit status 4, are not lock contention", () => {
  for (
    const stderr of [
      "iptables-restore v1.8.9 (nf_tables): CHAIN_DEL failed (Device or resource busy): chain X",
      "iptables-restore: line 3 failed",
      "",
    ]
  ) {
    assert.ok(!isLockContention(stderr), stderr);
  }
});

Deno.test("--random-fully support is read from the iptables version (1.6.2 and newer)", () => {
  const cases: [string, boolean][] = [
    ["iptables v1.8.9 (nf_tables)\n", true],
    ["iptables v1.8.9 (legacy)", true],
    ["ip6tables v1.6.2", true],
    ["iptables v1.6.1", false],
    ["iptables v1.4.21", false],
    ["iptables v2.0.0", true],
    ["garbage", false],
  ];
  for (const [output, supported] of cases) {
    assert.equal(parseVersion(output).randomFullySupported, supported, output);
  }
  assert.equal(
    parseVersion("iptables v1.8.9 (nf_tables)\n").description,
    "iptables v1.8.9 (nf_tables)",
  );
});
