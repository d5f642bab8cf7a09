/**
 * examples/systemd/ip-masq-agent.service as systemd itself reads it
 * (`systemd-analyze verify`, from Debian's `systemd` package), and its sandbox
 * against what the agent needs: the files its permission set reads (the
 * legacy tables files under /proc/net included) and the mode tools it runs.
 *
 * Needs no root and no running systemd: `verify` loads the unit offline. The
 * sandbox itself is not exercised (that needs systemd as PID 1); the settings
 * that would block the agent are checked one by one instead.
 *
 * @module
 */

import { deepStrictEqual, fail, ok } from "node:assert/strict";
import denoConfig from "../../deno.json" with { type: "json" };

const repoRoot = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
const unitPath = `${repoRoot}/examples/systemd/ip-masq-agent.service`;
const dropInPath = `${repoRoot}/examples/systemd/ip-masq-agent.service.d/config-dir.conf`;
const decoder = new TextDecoder();

function hasSystemdAnalyze(): boolean {
  try {
    return new Deno.Command("systemd-analyze", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).outputSync().success;
  } catch {
    return false;
  }
}

const skipReason = hasSystemdAnalyze()
  ? undefined
  : "systemd-analyze is not installed (apt-get install -y systemd)";

type Unit = Map<string, Map<string, string[]>>;

/** Section → key → every value given (a key may repeat), continuation lines joined. */
function parseUnit(text: string): Unit {
  const sections: Unit = new Map();
  let current: Map<string, string[]> | undefined;
  for (const raw of text.replace(/\\\n/g, " ").split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      current = sections.get(header[1]) ?? new Map();
      sections.set(header[1], current);
      continue;
    }
    const eq = line.indexOf("=");
    if (!current || eq < 0) fail(`unit line outside a section or without "=": ${line}`);
    const key = line.slice(0, eq).trim();
    current.set(key, [...current.get(key) ?? [], line.slice(eq + 1).trim().replace(/\s+/g, " ")]);
  }
  return sections;
}

/** The unit with its drop-in applied: a later value of a key wins, as for these keys in systemd. */
async function effectiveService(): Promise<Map<string, string>> {
  const service = new Map<string, string>();
  for (const path of [unitPath, dropInPath]) {
    for (const [key, values] of parseUnit(await Deno.readTextFile(path)).get("Service") ?? []) {
      service.set(key, values.at(-1)!);
    }
  }
  return service;
}

/** Paths a list setting (InaccessiblePaths=, NoExecPaths=, ...) names, without -/+ prefixes. */
function pathList(value: string | undefined): string[] {
  return (value ?? "").split(" ").filter((p) => p !== "").map((p) => p.replace(/^[-+]+/, ""));
}

function covers(prefix: string, path: string): boolean {
  return path === prefix || path.startsWith(prefix.endsWith("/") ? prefix : `${prefix}/`);
}

Deno.test({
  name: `systemd-analyze verify accepts the unit and its drop-in` +
    (skipReason ? ` (skipped: ${skipReason})` : ""),
  ignore: skipReason !== undefined,
  fn: async () => {
    // verify reads the .service.d directory beside the unit as its drop-ins.
    const result = await new Deno.Command("systemd-analyze", {
      args: ["verify", unitPath],
      env: { SYSTEMD_LOG_COLOR: "0" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const exec = (await effectiveService()).get("ExecStart")!.split(" ")[0];
    const installed = await Deno.stat(exec).then(() => true, () => false);
    // The one complaint allowed: the binary is not installed on the machine running the test.
    const allowed = `ip-masq-agent.service: Command ${exec} is not executable: ` +
      "No such file or directory";
    const lines = (decoder.decode(result.stdout) + decoder.decode(result.stderr))
      .split("\n").filter((line) => line.trim() !== "" && (installed || line !== allowed));
    deepStrictEqual(lines, [], "systemd-analyze verify complained");
  },
});

Deno.test("the unit's sandbox lets the agent read its files and run its mode's tools", async () => {
  const service = await effectiveService();
  const agent = denoConfig.permissions.agent;

  // Besides its permission set's files, /proc/net/ip_tables_names and ip6_tables_names: how
  // the agent (or iptables-legacy-save, for it) tells whether the legacy backend is loaded.
  // ProcSubset=pid hides /proc/net entirely; ProtectProc= only hides other processes'
  // directories, and /proc/net is /proc/self/net.
  const procSubset = service.get("ProcSubset") ?? "all";
  const inaccessible = pathList(service.get("InaccessiblePaths"));
  const read = [...agent.read, "/proc/net/ip_tables_names", "/proc/net/ip6_tables_names"];
  for (const path of read) {
    if (path.startsWith("/proc/")) {
      ok(procSubset === "all", `ProcSubset=${procSubset} hides ${path}`);
    }
    ok(!inaccessible.some((p) => covers(p, path)), `InaccessiblePaths= hides ${path}`);
    ok(
      !pathList(service.get("TemporaryFileSystem")).some((p) => covers(p.split(":")[0], path)),
      `TemporaryFileSystem= hides ${path}`,
    );
  }

  // The mode tools: found in systemd's default PATH (/usr/sbin on Debian), executable there.
  const path = /^PATH=(\S+)/.exec(service.get("Environment") ?? "")?.[1] ??
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin";
  const noExec = pathList(service.get("NoExecPaths"));
  const execOnly = pathList(service.get("ExecPaths"));
  for (const tool of agent.run) {
    const dirs = path.split(":");
    const found: string[] = [];
    for (const dir of dirs) {
      if (await Deno.stat(`${dir}/${tool}`).then(() => true, () => false)) found.push(dir);
    }
    if (found.length === 0) {
      // Not installed here (e.g. no iptables package): only check that /usr/sbin is usable.
      found.push("/usr/sbin");
    }
    const dir = found[0];
    ok(!inaccessible.some((p) => covers(p, dir)), `InaccessiblePaths= hides ${dir}/${tool}`);
    ok(
      !noExec.some((p) => covers(p, dir)) || execOnly.some((p) => covers(p, dir)),
      `NoExecPaths= forbids running ${dir}/${tool}`,
    );
  }

  // What the tools need from the kernel.
  const families = (service.get("RestrictAddressFamilies") ?? "").split(" ");
  for (const family of ["AF_NETLINK", "AF_INET", "AF_INET6"]) {
    ok(families.includes(family), `RestrictAddressFamilies= lacks ${family}`);
  }
  const bounding = (service.get("CapabilityBoundingSet") ?? "").split(" ");
  for (const capability of ["CAP_NET_ADMIN", "CAP_NET_RAW"]) {
    ok(bounding.includes(capability), `CapabilityBoundingSet= lacks ${capability}`);
  }
});

Deno.test("the unit's comments name the tools the agent runs, not iptables-save/-restore", async () => {
  const text = await Deno.readTextFile(unitPath);
  ok(!/iptables-save|iptables-restore/.test(text), "the unit still names iptables-save/-restore");
  const nftTools = denoConfig.permissions.agent.run.filter((t) => t.startsWith("iptables-nft"));
  ok(nftTools.length > 0, "the permission set runs no iptables-nft tool");
  for (const tool of nftTools) ok(text.includes(tool), `the unit's comments do not name ${tool}`);
  ok(text.includes("-legacy"), "the unit's comments do not mention the legacy tools");
});
