/**
 * Faults: the real entry point (production permission set) in a throwaway
 * network namespace, facing a held xtables lock, a failing or missing
 * iptables, signals as PID 1, a concurrent nat writer, and broken config
 * directories. Each case asserts the exit status (or survival), the message
 * and the live rules.
 */

import assert from "node:assert/strict";
import {
  agentChildren,
  type AgentOptions,
  AgentProcess,
  type AgentResult,
} from "../../lab/agent_process.ts";
import { ConfigMapDir } from "../../lab/config_map.ts";
import {
  exitWithin,
  hammerChain,
  hammerJump,
  hammerRules,
  NatHammer,
  shimmedBin,
  stopAgents,
  withoutTimestamps,
} from "../../lab/faults.ts";
import type { Backend } from "../../lab/host.ts";
import { netnsTest } from "../../lab/host.ts";
import {
  backendBin,
  NetNs,
  restoreNat,
  restrictedPath,
  ruleLines,
  saveNat,
} from "../../lab/netns.ts";
import { ToolLog } from "../../lab/tool_log.ts";
import { eventually, sleep, within } from "../../lab/wait.ts";

const chain = "IP-MASQ-AGENT";
const jumpPattern = new RegExp(`^-A POSTROUTING .*-j ${chain}$`);

/** The CIDRs our chain RETURNs, in order (link-local first), from a save. */
function returnCidrs(save: string): string[] {
  return ruleLines(save)
    .filter((line) => line.startsWith(`-A ${chain} `) && line.endsWith("-j RETURN"))
    .map((line) => / -d (\S+) /.exec(line)?.[1] ?? `unparsed: ${line}`);
}

function assertOurRules(save: string, cidrs: readonly string[], context: string) {
  const lines = ruleLines(save);
  assert.deepEqual(returnCidrs(save), ["169.254.0.0/16", ...cidrs], `${context}:\n${save}`);
  const ours = lines.filter((line) => line.startsWith(`-A ${chain} `));
  assert.match(ours.at(-1) ?? "", /-j MASQUERADE/, `${context}: MASQUERADE must be last`);
  assert.equal(lines.filter((line) => jumpPattern.test(line)).length, 1, `${context}: one jump`);
}

function yamlConfig(cidrs: readonly string[]): string {
  return `nonMasqueradeCIDRs:\n${cidrs.map((cidr) => `  - ${cidr}\n`).join("")}`;
}

const foreignRule =
  "-A POSTROUTING -s 10.42.0.0/16 -d 203.0.113.7/32 -j SNAT --to-source 192.0.2.1";

interface Env {
  readonly ns: NetNs;
  readonly root: string;
  readonly agents: AgentProcess[];
  start(options: Omit<AgentOptions, "ns">): Promise<AgentProcess>;
  run(options: Omit<AgentOptions, "ns">): Promise<AgentResult>;
}

/** A namespace, a temp directory and every agent started, all cleaned up whatever happens. */
async function withEnv(label: string, fn: (env: Env) => Promise<void>): Promise<void> {
  const ns = await NetNs.create(label);
  const root = await Deno.makeTempDir({ prefix: `imt-faults-${label}-` });
  const agents: AgentProcess[] = [];
  const env: Env = {
    ns,
    root,
    agents,
    start: async (options) => {
      const agent = await AgentProcess.start({ ns, ...options });
      agents.push(agent);
      return agent;
    },
    run: (options) => AgentProcess.run({ ns, ...options }, 20_000),
  };
  try {
    await fn(env);
  } finally {
    await stopAgents(agents);
    await ns.dispose();
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}

/** Installs config `cidrs` with `--once` plus a foreign POSTROUTING rule; returns the save. */
async function installBaseline(env: Env, binDir: string, cidrs: readonly string[]) {
  const dir = `${env.root}/baseline-config`;
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(`${dir}/ip-masq-agent`, yamlConfig(cidrs));
  await restoreNat(env.ns, binDir, `*nat\n${foreignRule}\nCOMMIT\n`);
  const result = await env.run({ binDir, configDir: dir, args: ["--once"] });
  assert.equal(result.code, 0, result.stderr);
  const save = await saveNat(env.ns, binDir);
  assertOurRules(save, cidrs, "baseline");
  assert.ok(ruleLines(save).includes(foreignRule), save);
  return save;
}

/**
 * `setup` for an agent whose mount namespace gets its own tmpfs /run (so
 * /run/xtables.lock is private to the test; /run/netns is carried over so
 * `ip netns exec` still finds the namespace), with the lock held by a
 * background `flock` whose pid goes to `pidFile`.
 */
function holdXtablesLock(pidFile: string): string {
  return `
mkdir -p "$IMT_WORK/netns"
mount --rbind /run/netns "$IMT_WORK/netns"
mount -t tmpfs -o size=1m,mode=755 imt-run /run
mkdir /run/netns
mount --move "$IMT_WORK/netns" /run/netns
flock --no-fork /run/xtables.lock sleep 60 </dev/null >/dev/null 2>&1 &
echo $! > "${pidFile}"
`;
}

/** Releases the lock (kills the holder); true if it was still held. */
async function releaseXtablesLock(pidFile: string): Promise<boolean> {
  const pid = Number(await Deno.readTextFile(pidFile).catch(() => ""));
  if (!pid) return false;
  await Deno.remove(pidFile);
  try {
    Deno.kill(pid, "SIGKILL");
    return true;
  } catch {
    return false;
  }
}

const lockWarning =
  /the xtables lock is held by another program; retrying in (\d+) ms .*Another app is currently holding the xtables lock/g;

netnsTest("faults: a held xtables lock is waited out with retries, never fatal", async () => {
  await withEnv("lock", async (env) => {
    const binDir = await backendBin("legacy", env.root);
    const holder = `${env.root}/holder.pid`;
    try {
      const agent = await env.start({
        binDir,
        args: ["--resync-interval=3"],
        setup: holdXtablesLock(holder),
      });
      // Two failed 5 s waits: the lock is held for longer than the 3 s resync
      // interval, which would exhaust the budget of any other failure.
      await agent.waitForLog(/(lock is held[^\n]*\n[^]*){2}/, 20_000);
      assert.deepEqual([...agent.stderr.matchAll(lockWarning)].map((m) => m[1]), ["1000", "2000"]);
      assert.equal(await exitWithin(agent, 0), undefined, "the agent must not exit on the lock");
      assert.equal(returnCidrs(await saveNat(env.ns, binDir)).length, 0, "nothing written yet");

      assert.ok(await releaseXtablesLock(holder), "the lock was held until now");
      await agent.waitForLog(/rules written \(ipv4\)/, 10_000);
      assertOurRules(
        await saveNat(env.ns, binDir),
        ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
        "after the lock is released",
      );
      assert.doesNotMatch(agent.stderr, /giving up|^E/m);
      await agent.signalAgent("SIGTERM");
      const result = await exitWithin(agent, 5_000);
      assert.equal(result?.code, 0, agent.stderr);
    } finally {
      await releaseXtablesLock(holder);
    }
  });
});

netnsTest(
  "faults: SIGTERM while waiting for the xtables lock exits 0 at once, nothing written",
  async () => {
    await withEnv("lockterm", async (env) => {
      const binDir = await backendBin("legacy", env.root);
      const holder = `${env.root}/holder.pid`;
      try {
        const agent = await env.start({ binDir, args: [], setup: holdXtablesLock(holder) });
        await agent.waitForLog(/desired ipv4 rules/);
        // The condition itself, not a sleep: an iptables call of the agent is running, and with
        // the lock held it is inside its 5 s wait for it (listings wait for the lock too).
        await eventually(
          "an iptables call of the agent waiting for the xtables lock",
          async () =>
            (await agentChildren(agent)).some((argv) =>
              /^ip6?tables-legacy/.test(argv[0].split("/").at(-1) ?? "")
            ),
          15_000,
          10,
        );
        const sent = Date.now();
        await agent.signalAgent("SIGTERM");
        const result = await exitWithin(agent, 10_000);
        const elapsed = Date.now() - sent;
        assert.equal(result?.code, 0, agent.stderr);
        // An agent that sat out the call would exit only when its 5 s lock wait ends, almost 5 s
        // after the signal; 3 s leaves a loaded machine room and still tells the two apart.
        assert.ok(elapsed < 3_000, `exited ${elapsed} ms after SIGTERM`);
        assert.match(agent.stderr, /received SIGTERM; exiting and leaving the rules in place/);
        assert.doesNotMatch(agent.stderr, /^E\d{4}/m);
        assert.equal(returnCidrs(await saveNat(env.ns, binDir)).length, 0, "nothing written");
      } finally {
        await releaseXtablesLock(holder);
      }
    });
  },
);

netnsTest(
  "faults: a failing iptables-restore is retried with backoff, exit 1 after one resync interval, rules untouched",
  async () => {
    await withEnv("restore", async (env) => {
      const realBin = await backendBin("legacy", env.root);
      const before = await installBaseline(env, realBin, ["10.0.0.0/8"]);
      const failingBin = await shimmedBin("legacy", env.root, {
        "iptables-legacy-restore": `cat >/dev/null\n` +
          `echo "iptables-restore: line 4 failed: simulated failure (test shim)" >&2\nexit 1`,
      });
      const tools = await ToolLog.create(failingBin, env.root);
      const configDir = `${env.root}/config`;
      await Deno.mkdir(configDir);
      await Deno.writeTextFile(
        `${configDir}/ip-masq-agent`,
        yamlConfig(["10.0.0.0/8", "192.0.2.0/24"]),
      );

      const agent = await env.start({
        binDir: tools.binDir,
        configDir,
        args: ["--resync-interval=3"],
      });
      // The condition, not a sleep: the second retry is announced, so the budget is not spent.
      await agent.waitForLog(/(applying rules failed; retrying in[^]*){2}/);
      assert.equal(await exitWithin(agent, 0), undefined, "still retrying within the budget");
      assert.equal(withoutTimestamps(await saveNat(env.ns, realBin)), withoutTimestamps(before));

      const result = await exitWithin(agent, 20_000);
      assert.equal(result?.code, 1, agent.stderr);
      // Timed by the agent's own log stamps, so the test's polling and load do not count: it
      // gives up one resync interval (3 s) after the first failure, never before, and before a
      // second interval would have ended (the bound is that generous, and documented here).
      const at = (text: RegExp) => {
        const line = agent.stderr.split("\n").find((line) => text.test(line)) ?? "";
        const stamp = /^[IWE]\d{4} (\d\d):(\d\d):(\d\d\.\d+) /.exec(line);
        assert.ok(stamp, `${text} logged with a time stamp:\n${agent.stderr}`);
        const [, h, m, sec] = stamp;
        return (Number(h) * 3600 + Number(m) * 60 + Number(sec)) * 1000;
      };
      const elapsed = at(/giving up/) - at(/applying rules failed/);
      assert.ok(elapsed >= 2_900 && elapsed < 6_000, `gave up after ${elapsed} ms, not ~3 s`);
      const retries = [...agent.stderr.matchAll(/applying rules failed; retrying in (\d+) ms/g)];
      // Backoff doubles (1 s, 2 s) but never sleeps past the budget's end.
      const delays = retries.map((m) => Number(m[1]));
      assert.equal(delays.length, 2, agent.stderr);
      assert.equal(delays[0], 1000);
      assert.ok(delays[1] > 1_500 && delays[1] <= 2_000, `second retry after ${delays[1]} ms`);
      assert.match(agent.stderr, /simulated failure \(test shim\)/);
      assert.match(
        agent.stderr,
        /E\d{4} [^\n]*giving up: iptables kept failing for one resync interval \(3000 ms\)/,
      );
      assert.equal(
        await tools.count("iptables-legacy-restore"),
        3,
        "one first attempt and two retries",
      );
      assert.equal(withoutTimestamps(await saveNat(env.ns, realBin)), withoutTimestamps(before));
    });
  },
);

netnsTest("faults: missing iptables tools fail at start with exit 1 naming the tool", async () => {
  await withEnv("missing", async (env) => {
    const realBin = await backendBin("nft", env.root);
    const cases = [
      { tools: [], missing: "iptables-nft" },
      { tools: ["iptables-nft"], missing: "iptables-nft-restore" },
    ];
    for (const { tools, missing } of cases) {
      const path = await restrictedPath("nft", env.root, tools);
      const started = Date.now();
      // Running mode: a missing tool is not a transient failure worth retrying.
      const result = await env.run({ binDir: path, env: { PATH: path }, args: [] });
      assert.equal(result.code, 1, result.stderr);
      assert.ok(Date.now() - started < 10_000, "fails at once, no retry budget");
      assert.match(
        result.stderr,
        new RegExp(`^E\\d{4} .*${missing} not found: install iptables`, "m"),
      );
      assert.doesNotMatch(result.stderr, /retrying in/);
      assert.equal(returnCidrs(await saveNat(env.ns, realBin)).length, 0);
    }
  });
});

for (const stopSignal of ["SIGTERM", "SIGINT"] as const) {
  netnsTest(
    `faults: as PID 1, SIGHUP reconciles and ${stopSignal} exits 0 within a second, rules intact`,
    async () => {
      await withEnv(`pid1-${stopSignal.slice(3).toLowerCase()}`, async (env) => {
        const binDir = await backendBin("nft", env.root);
        const agent = await env.start({ binDir, args: ["--resync-interval=60"], pid1: true });
        await agent.waitForLog(/rules written \(ipv4\)/);
        assert.match(agent.stderr, /^I\d{4} \S+\s+1 agent\] starting/m, "deno runs as PID 1");
        const installed = await saveNat(env.ns, binDir);
        const defaults = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];
        assertOurRules(installed, defaults, "after the first reconcile");

        // Drift that only a reconcile repairs (the next resync is a minute away).
        await env.ns.exec([`${binDir}/iptables`, "-t", "nat", "-D", chain, "2"], { check: true });
        assert.deepEqual(returnCidrs(await saveNat(env.ns, binDir)).length, 3);
        await agent.signalAgent("SIGHUP");
        await agent.waitForLog(
          /received SIGHUP; reconciling now[^]*drift repaired \(ipv4\)/,
          5_000,
        );
        assertOurRules(await saveNat(env.ns, binDir), defaults, "after SIGHUP");
        assert.equal(await exitWithin(agent, 0), undefined, "SIGHUP must not stop the agent");

        const before = await saveNat(env.ns, binDir);
        const sent = Date.now();
        await agent.signalAgent(stopSignal);
        const result = await exitWithin(agent, 10_000);
        const elapsed = Date.now() - sent;
        assert.equal(result?.code, 0, agent.stderr);
        // Nothing else would end it: the next resync is a minute away. A second is the promise;
        // the bound is 3 s so a loaded machine's slow teardown does not fail the test.
        assert.ok(elapsed < 3_000, `exited ${elapsed} ms after ${stopSignal}`);
        assert.match(agent.stderr, new RegExp(`received ${stopSignal}; exiting`));
        assert.equal(withoutTimestamps(await saveNat(env.ns, binDir)), withoutTimestamps(before));
      });
    },
  );
}

async function hammerCase(backend: Backend) {
  await withEnv(`hammer-${backend}`, async (env) => {
    const binDir = await backendBin(backend, env.root);
    await restoreNat(env.ns, binDir, NatHammer.initialPayload());
    const configs = [
      ["10.0.0.0/8"],
      ["10.0.0.0/8", "192.0.2.0/24"],
      ["172.16.0.0/12"],
      ["100.64.0.0/10", "198.51.100.0/24", "10.0.0.0/8"],
      ["192.168.0.0/16", "10.1.0.0/16"],
    ];
    const config = await ConfigMapDir.create(`${env.root}/config`, {
      "ip-masq-agent": yamlConfig(configs[0]),
    });
    const agent = await env.start({
      binDir,
      configDir: config.path,
      args: ["--resync-interval=1"],
    });
    await agent.waitForLog(/rules written \(ipv4\)/);

    const hammerDir = `${env.root}/hammer`;
    await Deno.mkdir(hammerDir);
    const hammer = NatHammer.start(env.ns, binDir, hammerDir);
    // Paced by the other writer's transactions, not by the clock: at least this many of them
    // before each config change and after the last, whatever the machine's load.
    const writesPerStep = 30;
    const hammered = async (what: string) => {
      const from = await hammer.progress();
      await eventually(
        `${writesPerStep} more writes of the other writer (${what})`,
        async () => (await hammer.progress()) >= from + writesPerStep,
        60_000,
        20,
      );
    };
    try {
      for (const cidrs of configs.slice(1)) {
        await hammered(`before applying ${cidrs.join(", ")}`);
        await config.update({ "ip-masq-agent": yamlConfig(cidrs) });
        // Each change applied before the next (so none coalesce), while the writer goes on.
        await eventually(`${cidrs.join(", ")} applied`, async () => {
          return returnCidrs(await saveNat(env.ns, binDir)).join() ===
            ["169.254.0.0/16", ...cidrs].join();
        }, 20_000);
      }
      await hammered("after the last config change");
      await hammer.finish();
      const done = await within("the other writer to stop", hammer.result(), 30_000);
      assert.equal(done.failed, 0, `the other writer's restores failed:\n${done.stderr}`);
      assert.ok(done.ok >= writesPerStep * configs.length, `only ${done.ok} restores`);

      const final = configs.at(-1)!;
      const save = await saveNat(env.ns, binDir);
      assertOurRules(save, final, `${backend}: the agent's rules`);
      const lines = ruleLines(save);
      assert.deepEqual(
        lines.filter((line) => line.startsWith(`-A ${hammerChain} `)),
        hammerRules(done.lastOk),
        `${backend}: the other writer's chain:\n${save}`,
      );
      assert.equal(lines.filter((line) => line === hammerJump).length, 1, save);
      assert.equal(await exitWithin(agent, 0), undefined, `the agent crashed:\n${agent.stderr}`);
      assert.doesNotMatch(agent.stderr, /^[EW]\d{4}/m);
      // Every config change was applied, and the other writer never damaged our rules.
      assert.equal(agent.stderr.match(/rules written \(ipv4\)/g)?.length, configs.length);
      assert.doesNotMatch(agent.stderr, /drift repaired/);

      const check = await env.run({ binDir, configDir: config.path, args: ["--check"] });
      assert.equal(check.code, 0, `--check with the final config:\n${check.stdout}${check.stderr}`);
      assert.match(check.stdout, /in sync: ipv4/);

      await agent.signalAgent("SIGTERM");
      assert.equal((await exitWithin(agent, 5_000))?.code, 0, agent.stderr);
    } finally {
      hammer.stop();
      await Promise.race([hammer.result(), sleep(5_000)]);
    }
  });
}

netnsTest(
  "faults: another writer hammering the nat table (nft) loses nothing, and neither do we",
  () => hammerCase("nft"),
);
netnsTest(
  "faults: another writer hammering the nat table (legacy) loses nothing, and neither do we",
  () => hammerCase("legacy"),
);

netnsTest(
  "faults: a missing or empty config directory means the defaults, and says so",
  async () => {
    await withEnv("cfgdefault", async (env) => {
      const binDir = await backendBin("nft", env.root);
      const defaults = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];

      const missing = await env.run({ binDir, args: ["--once"] });
      assert.equal(missing.code, 0, missing.stderr);
      assert.match(
        missing.stderr,
        /config directory \/etc\/config does not exist; using the defaults/,
      );
      assertOurRules(await saveNat(env.ns, binDir), defaults, "missing directory");

      await env.ns.exec([`${binDir}/iptables`, "-t", "nat", "-F", chain], { check: true });
      const empty = `${env.root}/empty`;
      await Deno.mkdir(empty);
      await Deno.writeTextFile(`${empty}/not-ours.yaml`, "nonMasqueradeCIDRs: [1.2.3.0/24]\n");
      await Deno.writeTextFile(`${empty}/.ip-masq-hidden`, "nonMasqueradeCIDRs: [1.2.3.0/24]\n");
      const result = await env.run({ binDir, configDir: empty, args: ["--once"] });
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stderr, /no ip-masq\* file in \/etc\/config; using the defaults/);
      assertOurRules(await saveNat(env.ns, binDir), defaults, "empty directory");
    });
  },
);

netnsTest(
  "faults: config entries that cannot be read are errors naming the path, exit 2, rules untouched",
  async () => {
    await withEnv("cfgbad", async (env) => {
      const binDir = await backendBin("nft", env.root);
      const before = await installBaseline(env, binDir, ["10.0.0.0/8"]);
      // Root reads a mode-000 file anyway (CAP_DAC_OVERRIDE); a pod without
      // that capability cannot, so such cases run the agent without it.
      const withoutDac = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"];
      const cases: {
        name: string;
        make: (dir: string) => Promise<void>;
        message: RegExp;
        wrap?: string[];
      }[] = [
        {
          name: "a symlink loop",
          make: (dir) => Deno.symlink("ip-masq-loop", `${dir}/ip-masq-loop`),
          message: /\/etc\/config\/ip-masq-loop[^\n]*symbolic link loop/,
        },
        {
          name: "a two-link symlink loop",
          make: async (dir) => {
            await Deno.symlink("ip-masq-b", `${dir}/ip-masq-a`);
            await Deno.symlink("ip-masq-a", `${dir}/ip-masq-b`);
          },
          message: /\/etc\/config\/ip-masq-a[^\n]*symbolic link loop/,
        },
        {
          name: "a directory",
          make: (dir) => Deno.mkdir(`${dir}/ip-masq-x`),
          message: /\/etc\/config\/ip-masq-x[^\n]*is a directory/,
        },
        {
          name: "a FIFO (reading it would block forever)",
          make: async (dir) => {
            const made = await new Deno.Command("mkfifo", { args: [`${dir}/ip-masq-fifo`] })
              .output();
            assert.ok(made.success);
          },
          message: /\/etc\/config\/ip-masq-fifo[^\n]*is not a regular file/,
        },
        {
          name: "a dangling symlink",
          make: (dir) => Deno.symlink("..data/ip-masq-agent", `${dir}/ip-masq-gone`),
          message: /\/etc\/config\/ip-masq-gone[^\n]*dangling symbolic link/,
        },
        {
          name: "a file without read permission (no CAP_DAC_OVERRIDE)",
          make: async (dir) => {
            await Deno.writeTextFile(`${dir}/ip-masq-secret`, yamlConfig(["192.0.2.0/24"]));
            await Deno.chmod(`${dir}/ip-masq-secret`, 0o000);
          },
          message: /\/etc\/config\/ip-masq-secret[^\n]*permission denied/,
          wrap: withoutDac,
        },
        {
          name: "a directory without read permission (no CAP_DAC_OVERRIDE)",
          make: (dir) => Deno.chmod(dir, 0o000),
          message: /\/etc\/config[^\n]*permission denied/i,
          wrap: withoutDac,
        },
      ];
      const notADirectory = await env.run({
        binDir,
        configDir: `${env.root}/baseline-config`,
        args: ["--once", "--config-dir=/etc/config/ip-masq-agent"],
      });
      assert.equal(notADirectory.code, 2, notADirectory.stderr);
      assert.match(notADirectory.stderr, /\/etc\/config\/ip-masq-agent[^\n]*is not a directory/);
      assert.equal(withoutTimestamps(await saveNat(env.ns, binDir)), withoutTimestamps(before));

      for (const [index, { name, make, message, wrap }] of cases.entries()) {
        const dir = `${env.root}/bad-${index}`;
        await Deno.mkdir(dir);
        await Deno.writeTextFile(`${dir}/ip-masq-agent`, yamlConfig(["172.16.0.0/12"]));
        await make(dir);
        for (const args of [["--once"], []]) {
          const result = await env.run({ binDir, configDir: dir, args, wrap });
          const mode = args.length ? "--once" : "running";
          assert.equal(result.code, 2, `${name} (${mode}):\n${result.stderr}`);
          assert.match(result.stderr, message, `${name} (${mode})`);
          assert.match(result.stderr, /the live rules were left unchanged/, `${name} (${mode})`);
          assert.equal(
            withoutTimestamps(await saveNat(env.ns, binDir)),
            withoutTimestamps(before),
            `${name} (${mode}): rules touched`,
          );
        }
        await Deno.chmod(dir, 0o755);
      }
    });
  },
);

netnsTest(
  "faults: config files swapped kubelet-style while the agent reads them: no crash, last content wins",
  async () => {
    await withEnv("cfgswap", async (env) => {
      const binDir = await backendBin("nft", env.root);
      const config = await ConfigMapDir.create(`${env.root}/config`, {
        "ip-masq-agent": yamlConfig(["10.0.0.0/8"]),
        "ip-masq-extra": yamlConfig(["192.0.2.0/24"]),
      });
      const agent = await env.start({
        binDir,
        configDir: config.path,
        args: ["--resync-interval=1"],
      });
      await agent.waitForLog(/rules written \(ipv4\)/);

      // Swap as fast as we can while SIGHUPs keep the agent reading the
      // directory back to back, so reads and swaps overlap.
      let swaps = 0;
      const until = Date.now() + 4_000;
      const swapping = (async () => {
        while (Date.now() < until) {
          const n = swaps++ % 250;
          await config.update({
            "ip-masq-agent": yamlConfig([`10.${n}.0.0/16`]),
            "ip-masq-extra": yamlConfig([`172.16.${n}.0/24`, "192.0.2.0/24"]),
          });
          if (swaps % 10 === 0) await sleep(1);
        }
      })();
      const nudging = (async () => {
        while (Date.now() < until) {
          await agent.signalAgent("SIGHUP");
          await sleep(20);
        }
      })();
      await Promise.all([swapping, nudging]);
      const last = ["10.250.0.0/16", "172.31.0.0/16", "198.51.100.0/24"];
      await config.update({
        "ip-masq-agent": yamlConfig([last[0]]),
        "ip-masq-extra": yamlConfig(last.slice(1)),
      });
      assert.ok(swaps > 100, `only ${swaps} swaps`);

      await eventually("the last content applied", async () => {
        return returnCidrs(await saveNat(env.ns, binDir)).join() ===
          ["169.254.0.0/16", ...last].join();
      }, 5_000);
      assertOurRules(await saveNat(env.ns, binDir), last, "after the swaps");
      assert.equal(await exitWithin(agent, 0), undefined, `the agent exited:\n${agent.stderr}`);
      assert.doesNotMatch(agent.stderr, /^E\d{4}/m);
      const reconciles = agent.stderr.match(/received SIGHUP/g)?.length ?? 0;
      assert.ok(reconciles > 50, `only ${reconciles} SIGHUPs reached the agent`);
      await agent.signalAgent("SIGTERM");
      assert.equal((await exitWithin(agent, 5_000))?.code, 0, agent.stderr);
    });
  },
);
