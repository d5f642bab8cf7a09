/**
 * The one-shot modes of lib/cli/one_shot.ts against fake dataplanes: what
 * `--check` prints and returns, what `--cleanup` refuses, and the warning for
 * config entries ignored for their name.
 */

import assert from "node:assert/strict";
import { ForeignChainError } from "../../lib/base/errors.ts";
import { defaultFlags } from "../../lib/settings/flags.ts";
import type { ConfigDirContents } from "../../lib/config/directory.ts";
import type { Dataplane, DataplanePlan } from "../../lib/policy/dataplane.ts";
import { check, cleanup, type ModeDeps } from "../../lib/cli/one_shot.ts";
import { CaptureLog } from "../support/capture_log.ts";

function deps(contents: ConfigDirContents = { kind: "files", files: [] }) {
  const printed: string[] = [];
  const log = new CaptureLog();
  const modeDeps: ModeDeps = {
    flags: defaultFlags,
    log,
    print: (text) => printed.push(text),
    readConfigDir: () => Promise.resolve(contents),
  };
  return { modeDeps, printed, log };
}

function planning(plan: DataplanePlan | Error, applied: DataplanePlan[] = []): Dataplane {
  // The failure, when there is one, is the read's: planning is pure.
  const read = () => plan instanceof Error ? Promise.reject(plan) : Promise.resolve(undefined);
  const answer = () => plan as DataplanePlan;
  return {
    label: "fake",
    read,
    plan: answer,
    readForRemoval: read,
    planRemoval: answer,
    apply: (_family, written) => {
      applied.push(written);
      return Promise.resolve();
    },
  };
}

const both = { ipv4: true, ipv6: true };

Deno.test("issue 15: --check says what differs and what the agent would do, never that it does it", async () => {
  const { modeDeps, printed } = deps();
  const code = await check(
    modeDeps,
    planning({
      drift: [
        { kind: "table-differs", message: "table ip ip-masq-agent differs (1 rule); replacing it" },
        { kind: "stale-chain", message: "iptables (nft): removing IP-MASQ-AGENT" },
      ],
      payload: "x",
    }),
    both,
  );
  assert.equal(code, 1);
  assert.deepEqual(printed, [
    "ipv4: table ip ip-masq-agent differs (1 rule); the agent would replace it",
    "ipv4: iptables (nft): IP-MASQ-AGENT is left over; the agent would remove it",
  ]);
});

Deno.test("issue 15: --check names a chain of ours under another name but does not fail on it", async () => {
  const { modeDeps, printed } = deps();
  const stale = {
    kind: "stale-chain",
    chain: "IP-MASQ-AGENT",
    message: "removing IP-MASQ-AGENT, left by an earlier --masq-chain",
  };
  assert.equal(await check(modeDeps, planning({ drift: [stale], payload: "x" }), both), 0);
  assert.match(printed[0], /^ipv4: IP-MASQ-AGENT is reached by a jump of ours but is not/);
  assert.match(
    printed[0],
    /managed by another ip-masq-agent on this node; the agent removes it once/,
  );
  assert.doesNotMatch(printed.join("\n"), /removing/);
});

Deno.test("issue 15: --cleanup refuses another tool's chain in any target and writes nothing", async () => {
  const { modeDeps, log } = deps();
  const applied: DataplanePlan[] = [];
  const removal = {
    drift: [{ kind: "stale-chain", message: "removing IP-MASQ-AGENT" }],
    payload: "x",
  };
  const code = await cleanup(modeDeps, [
    { dataplane: planning(removal, applied), family: "ipv4", name: "nft", optional: false },
    {
      dataplane: planning(
        new ForeignChainError("DOCKER", "ipv6", "-A DOCKER -i docker0 -j RETURN"),
      ),
      family: "ipv6",
      name: "nft",
      optional: true,
    },
  ]);
  assert.equal(code, 2);
  assert.deepEqual(applied, [], "nothing written, not even for the target that was fine");
  assert.match(log.text(), /cleanup \(ipv6, nft\): refusing to use the nat chain DOCKER/);
});

Deno.test("issue 15: a file ignored for its name is warned about once, naming it", async () => {
  const { modeDeps, log } = deps({ kind: "files", files: [], ignored: ["config"] });
  await check(modeDeps, planning({ drift: [], payload: null }), both);
  assert.deepEqual(log.matching(/is ignored/, "warn"), [
    '/etc/config/config is ignored: only entries whose name starts with "ip-masq" are config ' +
    'files (a ConfigMap key such as "config" must be renamed, e.g. to "ip-masq-agent")',
  ]);
});
