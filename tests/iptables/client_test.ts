import assert from "node:assert/strict";
import { SandboxDeniedError } from "../../lib/base/errors.ts";
import { ExecAbortedError, ProgramMissingError } from "../../lib/base/exec.ts";
import {
  chainExists,
  countRules,
  isLockContention,
  isNoSuchChain,
  natTableClient,
  parseVersion,
  probeVersion,
  restoreArgs,
} from "../../lib/iptables/client.ts";
import { ToolError } from "../../lib/base/tool.ts";
import { FakeExec } from "../support/fake_exec.ts";

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

Deno.test("a missing chain is recognised in both backends' words, nothing else is", () => {
  assert.ok(isNoSuchChain("iptables: No chain/target/match by that name."));
  assert.ok(
    isNoSuchChain(
      "iptables v1.8.9 (nf_tables): chain `IP-MASQ-AGENT' in table `nat' is incompatible, use 'nft' tool.",
    ),
  );
  assert.ok(!isNoSuchChain("iptables v1.8.9 (nf_tables): Could not fetch rule set generation id"));
  assert.ok(!isNoSuchChain(""));
});

const noSuchChainNft =
  "iptables v1.8.9 (nf_tables): chain `IP-MASQ-AGENT' in table `nat' is incompatible, use 'nft' tool.\n";

Deno.test("the client runs the chosen backend's own tools with exact arguments", async () => {
  for (
    const [mode, family, main, restore] of [
      ["nft", "ipv4", "iptables-nft", "iptables-nft-restore"],
      ["nft", "ipv6", "ip6tables-nft", "ip6tables-nft-restore"],
      ["legacy", "ipv4", "iptables-legacy", "iptables-legacy-restore"],
      ["legacy", "ipv6", "ip6tables-legacy", "ip6tables-legacy-restore"],
    ] as const
  ) {
    const fake = new FakeExec()
      .answer(main, ["-w", "5", "-t", "nat", "-S", "POSTROUTING"], {
        stdout: "-P POSTROUTING ACCEPT\n",
      })
      .answer(main, ["-w", "5", "-t", "nat", "-S", "IP-MASQ-AGENT"], {
        code: 1,
        stderr: noSuchChainNft,
      })
      .answer(main, ["-w", "5", "-t", "nat", "-S"], { stdout: "-P PREROUTING ACCEPT\n" })
      .answer(restore, [], {});
    const client = natTableClient(family, mode, fake.exec);
    assert.equal(client.mode, mode);
    assert.equal(client.family, family);
    assert.equal(await client.listChain("POSTROUTING"), "-P POSTROUTING ACCEPT\n");
    assert.equal(await client.listChain("IP-MASQ-AGENT"), null);
    assert.equal(await client.listTable(), "-P PREROUTING ACCEPT\n");
    await client.restore("*nat\nCOMMIT\n");
    assert.deepEqual(fake.lines, [
      `${main} -w 5 -t nat -S POSTROUTING`,
      `${main} -w 5 -t nat -S IP-MASQ-AGENT`,
      `${main} -w 5 -t nat -S`,
      `${restore} ${restoreArgs.join(" ")}`,
    ]);
    assert.equal(fake.calls[3].stdin, "*nat\nCOMMIT\n", "the payload goes to stdin");
    assert.equal(fake.calls[0].stdin, undefined, "a listing gets no stdin");
  }
});

Deno.test("each failure class of a call becomes the ToolError the loop acts on", async () => {
  const lock = new FakeExec().answer("iptables-legacy-restore", [], {
    code: 4,
    stderr: "Another app is currently holding the xtables lock. Stopped waiting after 5s.\n",
  });
  await assert.rejects(natTableClient("ipv4", "legacy", lock.exec).restore("x"), (error) => {
    assert.ok(error instanceof ToolError);
    assert.equal(error.failure, "lock");
    assert.equal(error.command, "iptables-legacy-restore --noflush -w 5 -W 100000");
    assert.match(error.message, /exited with status 4: Another app is currently holding/);
    return true;
  });

  const busy = new FakeExec().answer("iptables-nft-restore", [], {
    code: 4,
    stderr: "iptables-restore v1.8.9 (nf_tables): CHAIN_DEL failed (Device or resource busy)",
  });
  await assert.rejects(natTableClient("ipv4", "nft", busy.exec).restore("x"), (error) => {
    assert.ok(error instanceof ToolError);
    assert.equal(error.failure, "failed", "status 4 without the lock message is a plain failure");
    return true;
  });

  const listingFails = new FakeExec().answer("iptables-nft", ["-w", "5", "-t", "nat", "-S"], {
    code: 1,
    stderr: "",
  });
  await assert.rejects(
    natTableClient("ipv4", "nft", listingFails.exec).listChain("POSTROUTING"),
    /iptables-nft -w 5 -t nat -S POSTROUTING exited with status 1: \(no output\)/,
  );

  const missing = new FakeExec().on((call) => {
    throw new ProgramMissingError(call.command);
  });
  await assert.rejects(natTableClient("ipv6", "nft", missing.exec).listTable(), (error) => {
    assert.ok(error instanceof ToolError);
    assert.equal(error.failure, "missing");
    assert.match(error.message, /^ip6tables-nft not found: install iptables/);
    assert.ok(error.cause instanceof ProgramMissingError);
    return true;
  });

  const denied = new FakeExec().on((call) => {
    throw new SandboxDeniedError("run", call.command, new Error("NotCapable"));
  });
  await assert.rejects(
    natTableClient("ipv4", "nft", denied.exec).listTable(),
    SandboxDeniedError,
    "a sandbox denial passes through: it is the deployment's to fix (exit 2)",
  );

  const aborted = new FakeExec().on((call) => {
    throw new ExecAbortedError(call.command);
  });
  await assert.rejects(natTableClient("ipv4", "nft", aborted.exec).restore("x"), (error) => {
    assert.ok(error instanceof ToolError);
    assert.equal(error.failure, "failed");
    assert.match(error.message, /aborted/);
    return true;
  });
});

Deno.test("the signal reaches exec", async () => {
  const controller = new AbortController();
  let seen: AbortSignal | undefined;
  const fake = new FakeExec().on((_call, options) => {
    seen = options.signal;
    return { code: 0, stdout: "", stderr: "" };
  });
  await natTableClient("ipv4", "nft", fake.exec).listChain("X", controller.signal);
  assert.equal(seen, controller.signal);
});

Deno.test("probeVersion asks the chosen backend's tool", async () => {
  const fake = new FakeExec().answer("ip6tables-legacy", ["--version"], {
    stdout: "ip6tables v1.8.9 (legacy)\n",
  });
  const version = await probeVersion("legacy", "ipv6", fake.exec);
  assert.deepEqual(version, {
    description: "ip6tables v1.8.9 (legacy)",
    randomFullySupported: true,
  });
  assert.deepEqual(fake.lines, ["ip6tables-legacy --version"]);
});

Deno.test("chainExists and countRules gather evidence and never throw on a failed listing", async () => {
  const fake = new FakeExec()
    .answer("iptables-nft", ["-t", "mangle", "-S", "KUBE-IPTABLES-HINT"], {
      stdout: "-N KUBE-IPTABLES-HINT\n",
    })
    .answer("iptables-nft", ["-t", "mangle", "-S", "KUBE-KUBELET-CANARY"], {
      code: 1,
      stderr: noSuchChainNft,
    })
    .answer("iptables-nft", ["-t", "nat", "-S"], {
      stdout: "-P POSTROUTING ACCEPT\n-N X\n-A X -j RETURN\n-A POSTROUTING -j X\n",
    })
    .answer("iptables-nft", ["-t", "filter", "-S"], { code: 3, stderr: "no filter table" })
    .answer("iptables-nft", ["-t", "mangle", "-S"], { stdout: "-P PREROUTING ACCEPT\n" });
  assert.equal(await chainExists(fake.exec, "nft", "ipv4", "mangle", "KUBE-IPTABLES-HINT"), true);
  assert.equal(await chainExists(fake.exec, "nft", "ipv4", "mangle", "KUBE-KUBELET-CANARY"), false);
  assert.equal(await countRules(fake.exec, "nft", "ipv4", ["nat", "filter", "mangle"]), 2);
});
