/**
 * The shipped examples are what operators copy, so they are tested like code: every manifest
 * parses the way Kubernetes reads it (YAML 1.1), every ConfigMap passes the agent's own
 * validation through the real entry point, the DaemonSet mounts exactly the ConfigMaps that
 * exist and passes flags the agent's parser accepts, the systemd unit is hardened, and the
 * build (deno.json tasks, Dockerfile, .dockerignore) keeps the production permission set.
 *
 * Needs no root: the entry point runs only in --dry-run mode.
 */

import { agentPrograms } from "../../lib/cli/netfilter.ts";
import { nftProgram } from "../../lib/nftables/client.ts";
import { deepStrictEqual, equal, fail, match, notEqual, ok } from "node:assert/strict";
// @ts-types="npm:yaml"
import { parseAllDocuments } from "yaml";
import denoConfig from "../../deno.json" with { type: "json" };
import { type AgentFlags, type FlagDef, flagTable, parseFlags } from "../../lib/settings/flags.ts";
import { parseSetting, settingKeyNames, settingKeys } from "../../lib/settings/keys.ts";

const repoRoot = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
const examplesDir = `${repoRoot}/examples`;
const rawConfigDir = `${examplesDir}/config`;
const decoder = new TextDecoder();

// ---------------------------------------------------------------------------------------------
// Small typed accessors for parsed YAML (unknown in, checked values out).

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function obj(value: unknown, where: string): Json {
  if (!isObject(value)) fail(`${where}: expected a mapping, got ${JSON.stringify(value)}`);
  return value;
}

function arr(value: unknown, where: string): unknown[] {
  if (!Array.isArray(value)) fail(`${where}: expected a list, got ${JSON.stringify(value)}`);
  return value;
}

function str(value: unknown, where: string): string {
  if (typeof value !== "string") fail(`${where}: expected a string, got ${JSON.stringify(value)}`);
  return value;
}

function strings(value: unknown, where: string): string[] {
  return arr(value, where).map((item, i) => str(item, `${where}[${i}]`));
}

/** Follows a dotted path through mappings; list steps are numeric. */
function at(root: unknown, path: string): unknown {
  let node = root;
  for (const step of path.split(".")) {
    if (Array.isArray(node) && /^\d+$/.test(step)) node = node[Number(step)];
    else if (isObject(node)) node = node[step];
    else fail(`${path}: cannot descend into ${JSON.stringify(node)} at "${step}"`);
  }
  return node;
}

// ---------------------------------------------------------------------------------------------
// Loading the examples.

interface YamlFile {
  readonly path: string; // relative to examples/
  readonly text: string;
  readonly docs: Json[];
}

function parseYaml(text: string, version: "1.1" | "1.2", where: string): Json[] {
  const docs = parseAllDocuments(text, { version });
  if (!Array.isArray(docs)) fail(`${where}: no YAML documents`);
  return docs.map((doc, i) => {
    const problems = [...doc.errors, ...doc.warnings].map((e) => e.message);
    deepStrictEqual(problems, [], `${where} document ${i + 1} (YAML ${version})`);
    return obj(doc.toJS(), `${where} document ${i + 1}`);
  });
}

async function listFiles(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const rel = prefix + entry.name;
    if (entry.isDirectory) out.push(...await listFiles(`${dir}/${entry.name}`, `${rel}/`));
    else out.push(rel);
  }
  return out.sort();
}

const yamlFiles: YamlFile[] = await Promise.all(
  (await listFiles(examplesDir)).filter((p) => /\.ya?ml$/.test(p)).map(async (path) => {
    const text = await Deno.readTextFile(`${examplesDir}/${path}`);
    return { path, text, docs: parseYaml(text, "1.1", path) };
  }),
);

function docsOfKind(kind: string): { path: string; doc: Json }[] {
  return yamlFiles.flatMap((f) =>
    f.docs.filter((d) => d.kind === kind).map((doc) => ({
      path: f.path,
      doc,
    }))
  );
}

const configMaps = docsOfKind("ConfigMap");
const daemonSets = docsOfKind("DaemonSet");

function onlyOne<T>(items: T[], what: string): T {
  equal(items.length, 1, `expected exactly one ${what}, found ${items.length}`);
  return items[0];
}

/**
 * The shipped DaemonSets, one per upstream layout, each replacing that upstream's DaemonSet in
 * place: the same name, namespace and selector (a selector never changes, so `kubectl apply`
 * over a different one is refused), and its ConfigMaps by name and key, mounted at the same
 * paths (issue 15 item 6).
 */
interface Layout {
  readonly path: string;
  /** Upstream's ConfigMaps: name, key, and the file the key becomes in /etc/config. */
  readonly configMaps: readonly { name: string; key: string; path: string }[];
  /** The example files holding those ConfigMaps. */
  readonly examples: readonly string[];
}

const layouts: Readonly<Record<"v1" | "v2", Layout>> = {
  v1: {
    path: "v1/ip-masq-agent.yaml",
    configMaps: [{ name: "ip-masq-agent", key: "config", path: "ip-masq-agent" }],
    examples: ["v1/config.yaml"],
  },
  v2: {
    path: "ip-masq-agent.yaml",
    configMaps: [
      { name: "ip-masq-agent-config", key: "ip-masq-agent", path: "ip-masq-agent" },
      {
        name: "ip-masq-agent-config-reconciled",
        key: "ip-masq-agent-reconciled",
        path: "ip-masq-agent-reconciled",
      },
    ],
    examples: ["config-custom.yaml", "config-reconciled.yaml"],
  },
};

interface Shipped {
  readonly layout: "v1" | "v2";
  readonly path: string;
  readonly daemonSet: Json;
  readonly podSpec: Json;
  readonly container: Json;
}

const shipped: Shipped[] = (["v2", "v1"] as const).map((layout) => {
  const path = layouts[layout].path;
  const daemonSet = onlyOne(daemonSets.filter((d) => d.path === path), `DaemonSet in ${path}`)
    .doc;
  const podSpec = obj(at(daemonSet, "spec.template.spec"), `${path} pod spec`);
  const container = obj(arr(podSpec.containers, "containers")[0], `${path} first container`);
  return { layout, path, daemonSet, podSpec, container };
});

/** The files a layout's example ConfigMaps become in /etc/config, as kubelet names them. */
function layoutFiles(layout: Layout): Map<string, string> {
  const files = new Map<string, string>();
  for (const { name, key, path } of layout.configMaps) {
    const cm = onlyOne(
      configMaps.filter((c) =>
        layout.examples.includes(c.path) && at(c.doc, "metadata.name") === name
      ),
      `ConfigMap ${name} in ${layout.examples.join(", ")}`,
    );
    const value = configMapData(cm.doc, cm.path).get(key);
    if (value === undefined) fail(`${cm.path}: no key ${key}`);
    files.set(path, value);
  }
  return files;
}

/** The file name a ConfigMap key becomes: the item path of a shipped DaemonSet mounting it. */
function mountedName(configMapName: string, key: string): string {
  for (const layout of Object.values(layouts)) {
    const item = layout.configMaps.find((c) => c.name === configMapName && c.key === key);
    if (item) return item.path;
  }
  return key;
}

function configMapData(doc: Json, where: string): Map<string, string> {
  const data = obj(doc.data, `${where} data`);
  return new Map(Object.entries(data).map(([k, v]) => [k, str(v, `${where} data.${k}`)]));
}

// ---------------------------------------------------------------------------------------------
// Flags.

const modeFlagNames = new Set([
  "once",
  "dry-run",
  "check",
  "cleanup",
  "explain",
  "explain-source",
  "version",
  "help",
  "h",
]);
/** The flags a manifest is expected to spell out: every real flag that is not a mode. */
const settingFlags: FlagDef[] = flagTable.filter((d) =>
  d.field !== null && !modeFlagNames.has(d.name)
);
/** The flags that change the desired rules, which --check must see exactly as the agent does. */
function parsedFlags(argv: readonly string[], where: string): AgentFlags {
  const result = parseFlags(argv);
  if (!result.ok) fail(`${where}: ${result.error}`);
  deepStrictEqual(result.value.ignored, [], `${where}: passes flags the agent only ignores`);
  return result.value.flags;
}

/** Every setting flag appears exactly once as --name=value; returns the values by name. */
function assertEveryFlagSpelledOut(argv: readonly string[], where: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const arg of argv) {
    const match = /^--([a-z0-9_-]+)=(.*)$/.exec(arg);
    if (match === null) fail(`${where}: ${JSON.stringify(arg)} is not in --name=value form`);
    ok(!values.has(match[1]), `${where}: --${match[1]} given twice`);
    ok(!modeFlagNames.has(match[1]), `${where}: mode flag --${match[1]} in a long-running config`);
    values.set(match[1], match[2]);
  }
  deepStrictEqual(
    [...values.keys()].sort(),
    settingFlags.map((d) => d.name).sort(),
    `${where}: every flag (other than the modes) should be spelled out`,
  );
  return values;
}

function assertDefaults(values: Map<string, string>, where: string, except: string[] = []) {
  for (const def of settingFlags) {
    if (except.includes(def.name)) continue;
    equal(values.get(def.name), String(def.default), `${where}: --${def.name} is not its default`);
  }
}

// ---------------------------------------------------------------------------------------------
// Running the real entry point, as `deno task start` does, in --dry-run mode.

/** Each deno.json task's command line, whether it is written as a string or `{ command }`. */
function taskCommands(): Record<string, string> {
  const tasks: Record<string, string | { command: string }> = denoConfig.tasks;
  return Object.fromEntries(
    Object.entries(tasks).map((
      [name, task],
    ) => [name, typeof task === "string" ? task : task.command]),
  );
}

const startTokens = denoConfig.tasks.start.split(/\s+/);
/** V8 settings of the agent (docs/benchmarks.md, item 3): the same in every way it is run. */
const agentV8Flags = "--v8-flags=--lite-mode,--expose-gc";

async function dryRun(configDir: string, flags: readonly string[]) {
  deepStrictEqual(startTokens, [
    "deno",
    "run",
    "-q",
    "--no-prompt",
    "-P=agent",
    agentV8Flags,
    "main.ts",
  ]);
  const args = [
    ...startTokens.slice(1, -1),
    `--allow-read=${configDir}`,
    "main.ts",
    "--dry-run",
    ...flags.filter((f) => !f.startsWith("--config-dir=")),
    `--config-dir=${configDir}`,
  ];
  const output = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: repoRoot,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** Writes files as kubelet projects a volume: timestamped dir, `..data`, per-path symlinks. */
async function kubeletVolume(files: Map<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "ip-masq-examples-" });
  const payload = "..2026_11_29_00_00_00.000000001";
  await Deno.mkdir(`${dir}/${payload}`);
  for (const [name, content] of files) {
    await Deno.writeTextFile(`${dir}/${payload}/${name}`, content);
    await Deno.chmod(`${dir}/${payload}/${name}`, 0o444);
    await Deno.symlink(`..data/${name}`, `${dir}/${name}`);
  }
  await Deno.symlink(payload, `${dir}/..data`);
  return dir;
}

function cidrsIn(config: string): string[] {
  return [...config.matchAll(/^\s*-\s*([0-9a-f.:]+\/\d+)\s*$/gim)].map((m) => m[1]);
}

function assertDryRunOk(
  result: { code: number; stdout: string; stderr: string },
  families: string[],
  where: string,
) {
  const detail = `${where}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
  equal(result.code, 0, `dry-run failed: ${detail}`);
  for (const family of ["ipv4", "ipv6"]) {
    equal(
      result.stdout.includes(`# ${family}\n`),
      families.includes(family),
      `# ${family}: ${detail}`,
    );
  }
  // Findings (overlapping or duplicate CIDRs, ...) are warnings; an example should have none.
  ok(!/^[WE]\d{4} /m.test(result.stderr), `warnings or errors logged: ${detail}`);
}

// ---------------------------------------------------------------------------------------------
// Parsing other formats.

/** A systemd unit as section -> key -> values (a key may repeat), continuations joined. */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  const lines = text.replace(/\\\n/g, " ").split("\n");
  for (const raw of lines) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      current = sections.get(header[1]) ?? new Map();
      sections.set(header[1], current);
      continue;
    }
    const eq = line.indexOf("=");
    if (current === undefined || eq < 0) {
      fail(`unit line outside a section or without "=": ${line}`);
    }
    const key = line.slice(0, eq).trim();
    current.set(key, [...current.get(key) ?? [], line.slice(eq + 1).trim().replace(/\s+/g, " ")]);
  }
  return sections;
}

function unitValue(unit: Map<string, Map<string, string[]>>, section: string, key: string) {
  const values = unit.get(section)?.get(key);
  if (values === undefined || values.length === 0) fail(`[${section}] ${key}= is missing`);
  return values[values.length - 1];
}

interface DockerInstruction {
  readonly op: string;
  readonly args: string;
}

interface DockerStage {
  readonly from: string; // image with global ARGs expanded
  readonly name?: string;
  readonly platform?: string;
  readonly body: DockerInstruction[];
}

function parseDockerfile(text: string) {
  const logical: string[] = [];
  let pending = "";
  for (const raw of text.split("\n")) {
    if (/^\s*#/.test(raw)) continue; // comments, also inside continued instructions
    const line = raw.replace(/\s+$/, "");
    if (line.endsWith("\\")) {
      pending += line.slice(0, -1) + " ";
      continue;
    }
    const full = (pending + line).trim();
    pending = "";
    if (full !== "") logical.push(full);
  }
  const globalArgs = new Map<string, string>();
  const expand = (s: string) =>
    s.replace(/\$\{(\w+)\}|\$(\w+)/g, (m, a, b) => globalArgs.get(a ?? b) ?? m);
  const stages: DockerStage[] = [];
  for (const line of logical) {
    const space = line.search(/\s/);
    const op = line.slice(0, space).toUpperCase();
    const args = line.slice(space + 1).trim();
    if (op === "FROM") {
      const m = /^(?:--platform=(\S+)\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      if (m === null) fail(`cannot read FROM ${args}`);
      stages.push({ platform: m[1], from: expand(m[2]), name: m[3], body: [] });
    } else if (stages.length === 0) {
      equal(op, "ARG", `only ARG may precede the first FROM, got ${op}`);
      const [name, value = ""] = args.split("=", 2);
      globalArgs.set(name, value);
    } else {
      stages[stages.length - 1].body.push({ op, args });
    }
  }
  return { stages, globalArgs };
}

function taskOption(task: string, option: string): string {
  const tokens = task.split(/\s+/);
  const i = tokens.indexOf(option);
  ok(i >= 0 && i + 1 < tokens.length, `${option} missing in: ${task}`);
  return tokens[i + 1];
}

function mebibytes(quantity: string): number {
  const m = /^(\d+)(Ki|Mi|Gi)?$/.exec(quantity);
  if (m === null) fail(`unexpected memory quantity ${quantity}`);
  return Number(m[1]) * { "": 1 / 1048576, Ki: 1 / 1024, Mi: 1, Gi: 1024 }[m[2] ?? ""]!;
}

function millicores(quantity: string): number {
  const m = /^(\d+)(m)?$/.exec(quantity);
  if (m === null) fail(`unexpected cpu quantity ${quantity}`);
  return Number(m[1]) * (m[2] ? 1 : 1000);
}

// =============================================================================================
// Tests: YAML as Kubernetes reads it.

Deno.test("every example manifest is valid YAML 1.1 and reads the same under YAML 1.2", () => {
  ok(yamlFiles.length >= 5, `examples found: ${yamlFiles.map((f) => f.path).join(", ")}`);
  for (const file of yamlFiles) {
    // Kubernetes reads YAML 1.1 (0444 is octal, yes/on are booleans); kustomize, yq and JSON
    // converters read 1.2. A manifest must not depend on which one reads it.
    deepStrictEqual(parseYaml(file.text, "1.2", file.path), file.docs, file.path);
    for (const [i, doc] of file.docs.entries()) {
      ok(
        doc.kind === "ConfigMap" || doc.kind === "DaemonSet",
        `${file.path} document ${i + 1}: unexpected kind ${JSON.stringify(doc.kind)}`,
      );
      equal(at(doc, "metadata.namespace"), "kube-system", `${file.path} namespace`);
    }
  }
});

// =============================================================================================
// ConfigMaps.

Deno.test("every ConfigMap key becomes a file the agent reads (a name starting with ip-masq)", () => {
  ok(configMaps.length >= 4);
  for (const { path, doc } of configMaps) {
    const data = configMapData(doc, path);
    ok(data.size > 0, `${path}: empty data`);
    const name = str(at(doc, "metadata.name"), `${path} name`);
    for (const key of data.keys()) {
      ok(/^[-._a-zA-Z0-9]+$/.test(key), `${path}: ${key} is not a valid ConfigMap key`);
      ok(
        mountedName(name, key).startsWith("ip-masq"),
        `${path}: data key ${key} is mounted as ${mountedName(name, key)}`,
      );
    }
    equal(doc.apiVersion, "v1", path);
  }
});

Deno.test("config-custom and config-reconciled carry examples/config/* byte for byte", async () => {
  const raw = new Map<string, string>();
  for await (const entry of Deno.readDir(rawConfigDir)) {
    raw.set(entry.name, await Deno.readTextFile(`${rawConfigDir}/${entry.name}`));
  }
  const files = layoutFiles(layouts.v2);
  deepStrictEqual([...files.keys()].sort(), [...raw.keys()].sort());
  for (const [name, value] of files) {
    // Strict equality of the decoded scalars: same bytes, same final newline.
    equal(value, raw.get(name), `${name} differs from examples/config/${name}`);
  }
});

/** The config files of a ConfigMap, by the names they get in /etc/config. */
function mountedData(doc: Json, path: string): Map<string, string> {
  const name = str(at(doc, "metadata.name"), `${path} name`);
  return new Map(
    [...configMapData(doc, path)].map(([key, value]) => [mountedName(name, key), value]),
  );
}

Deno.test("every ConfigMap passes the agent's own validation (real entry point, --dry-run)", async () => {
  for (const { path, doc } of configMaps) {
    const data = mountedData(doc, path);
    const dualStack = path.startsWith("dual-stack/");
    const dir = await kubeletVolume(data);
    try {
      const result = await dryRun(dir, []);
      assertDryRunOk(result, dualStack ? ["ipv4", "ipv6"] : ["ipv4"], path);
      for (const config of data.values()) {
        for (const cidr of cidrsIn(config)) {
          ok(
            result.stdout.includes(`-A IP-MASQ-AGENT -d ${cidr} `),
            `${path}: no rule for ${cidr}`,
          );
        }
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
    if (dualStack) {
      // The ConfigMap turns IPv6 on itself: without its enableIPv6 line the same CIDRs are a
      // configuration error, and with it nothing in the DaemonSet changes.
      const without = new Map(
        [...data].map(([k, v]) => [k, v.replace(/^ *enableIPv6: true\n/m, "")]),
      );
      notEqual([...without.values()].join(), [...data.values()].join(), `${path}: enableIPv6`);
      const dir = await kubeletVolume(without);
      try {
        const result = await dryRun(dir, []);
        equal(result.code, 2, `${path} without enableIPv6: ${result.stderr}`);
        ok(result.stderr.includes("enableIPv6: true"), result.stderr);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    }
  }
});

Deno.test("each layout's ConfigMap holds every setting that shapes the rules, at its default", () => {
  // Issue 15 item 8: kept in the ConfigMap, a setting is read by the agent and by its readiness
  // probe alike; the manifests' args and probe repeat none of them.
  for (const layout of Object.values(layouts)) {
    const text = [...layoutFiles(layout).values()].join("\n");
    for (const key of settingKeyNames) {
      const match = new RegExp(`^${key}: (.*)$`, "m").exec(text);
      if (match === null) fail(`${layout.examples.join(", ")}: no ${key}`);
      const def = flagTable.find((d) => d.field === settingKeys[key])!;
      const value = parseYaml(`v: ${match[1]}\n`, "1.1", key)[0].v;
      const parsed = parseSetting(key, value);
      ok(parsed.ok, `${key}: ${JSON.stringify(parsed)}`);
      equal(parsed.value.text, String(def.default), `${key} is at the flag's default`);
    }
  }
});

// =============================================================================================
// The DaemonSet.

for (const { layout, path, daemonSet, podSpec, container } of shipped) {
  Deno.test(`${path} replaces upstream ${layout}'s DaemonSet in place`, () => {
    equal(daemonSet.apiVersion, "apps/v1", path);
    equal(at(daemonSet, "metadata.name"), "ip-masq-agent", path);
    equal(at(daemonSet, "metadata.namespace"), "kube-system", path);
    // The selector upstream's DaemonSet has; Kubernetes rejects an apply that changes it.
    deepStrictEqual(at(daemonSet, "spec.selector"), {
      matchLabels: { "k8s-app": "ip-masq-agent" },
    });
    const labels = obj(at(daemonSet, "spec.template.metadata.labels"), `${path} pod labels`);
    equal(labels["k8s-app"], "ip-masq-agent", "the pod template carries the selector's label");
  });

  Deno.test(`${path} has the fields a node agent needs`, () => {
    equal(podSpec.hostNetwork, true, "hostNetwork");
    equal(podSpec.priorityClassName, "system-node-critical");
    ok(
      arr(podSpec.tolerations, "tolerations").some((t) =>
        isObject(t) && t.operator === "Exists" && t.key === undefined && t.effect === undefined
      ),
      "a toleration with operator Exists and no key or effect (tolerates every taint)",
    );
    equal(arr(podSpec.containers, "containers").length, 1);

    const security = obj(container.securityContext, "securityContext");
    equal(security.privileged, false, "privileged");
    equal(security.allowPrivilegeEscalation, false, "allowPrivilegeEscalation");
    equal(security.readOnlyRootFilesystem, true, "readOnlyRootFilesystem");
    deepStrictEqual(strings(at(security, "capabilities.drop"), "drop"), ["ALL"]);
    deepStrictEqual(strings(at(security, "capabilities.add"), "add").sort(), [
      "NET_ADMIN",
      "NET_RAW",
    ]);

    const resources = obj(container.resources, "resources");
    for (const kind of ["requests", "limits"]) {
      for (const resource of ["cpu", "memory"]) {
        str(at(resources, `${kind}.${resource}`), `${kind}.${resource}`);
      }
    }
    ok(
      millicores(str(at(resources, "requests.cpu"), "")) <=
        millicores(str(at(resources, "limits.cpu"), "")),
    );
    ok(
      mebibytes(str(at(resources, "requests.memory"), "")) <=
        mebibytes(str(at(resources, "limits.memory"), "")),
    );
    // A Deno agent is ~56 MiB resident and each --check probe briefly starts a second one.
    ok(mebibytes(str(at(resources, "limits.memory"), "")) >= 96, "memory limit too small");

    // The image the Dockerfile builds, at the version deno.json declares.
    const image = str(container.image, "image");
    ok(image.endsWith(`ip-masq-agent:${denoConfig.version}`), `image ${image}`);
  });

  Deno.test(`${path}: args hold only the process's own flags, no setting that shapes the rules`, () => {
    const args = strings(container.args, "args");
    const flags = parsedFlags(args, `${path} args`);
    equal(flags.configDir, "/etc/config");
    for (const arg of args) {
      ok(/^--[a-z0-9-]+=/.test(arg), `${path}: ${JSON.stringify(arg)} is not in --name=value form`);
    }
    const settingFlagNames = flagTable.filter((d) =>
      (Object.values(settingKeys) as string[]).includes(String(d.field))
    ).map((d) => d.name);
    const repeated = args.filter((arg) => settingFlagNames.some((n) => arg.startsWith(`--${n}=`)));
    deepStrictEqual(
      repeated,
      [],
      `${path}: a rule-shaping setting in args belongs in the ConfigMap`,
    );
    equal(container.command, undefined, "the image's ENTRYPOINT is the binary; no command");
  });

  Deno.test(`${path}: the readiness probe is --check on the config directory, nothing else`, async () => {
    const command = strings(at(container, "readinessProbe.exec.command"), "probe command");
    const entrypoint = JSON.parse(
      onlyOne(
        (await dockerfile()).final.body.filter((i) => i.op === "ENTRYPOINT"),
        "ENTRYPOINT",
      ).args,
    );
    // It reads the settings from the same files as the agent: it cannot disagree with it.
    deepStrictEqual(command, [entrypoint[0], "--check", "--config-dir=/etc/config"]);
    equal(
      parsedFlags(command.slice(1), "probe").configDir,
      parsedFlags(
        strings(container.args, "args"),
        "args",
      ).configDir,
    );
    const probe = obj(container.readinessProbe, "readinessProbe");
    ok(typeof probe.timeoutSeconds === "number" && probe.timeoutSeconds >= 5, "probe timeout");
  });

  Deno.test(`${path}: on its read-only root the agent picks the iptables mode itself`, () => {
    // The image's plain iptables names are links to iptables-wrapper, which cannot relink them on
    // a read-only root and then fails every call: the agent must choose the backend and run its
    // own tools (tests/root/production_shape_test.ts runs this container in that layout).
    equal(at(container, "securityContext.readOnlyRootFilesystem"), true, "readOnlyRootFilesystem");
    const text = [...layoutFiles(layouts[layout]).values()].join("\n");
    ok(/^iptablesMode: auto$/m.test(text), `${layout}'s ConfigMap says iptablesMode: auto`);
    const file = onlyOne(yamlFiles.filter((f) => f.path === path), path).text;
    ok(
      !/harmless/i.test(file),
      "the manifest still calls the wrapper's read-only fallback harmless",
    );
  });

  Deno.test(`${path}: the config volume mounts upstream ${layout}'s ConfigMaps, optional, by key`, () => {
    const volumes = arr(podSpec.volumes, "volumes").map((v, i) => obj(v, `volumes[${i}]`));
    const mounts = arr(container.volumeMounts, "volumeMounts").map((m, i) =>
      obj(m, `mounts[${i}]`)
    );
    const configDir = parsedFlags(strings(container.args, "args"), "args").configDir;
    const mount = onlyOne(mounts.filter((m) => m.mountPath === configDir), `mount at ${configDir}`);
    equal(mount.readOnly, true, "config mount is read-only");
    deepStrictEqual(Object.keys(mount).sort(), ["mountPath", "name", "readOnly"], "no subPath");
    const volume = onlyOne(volumes.filter((v) => v.name === mount.name), "config volume");
    const expected = layouts[layout].configMaps;
    let sources: Json[];
    if (layout === "v1") {
      deepStrictEqual(Object.keys(volume).sort(), ["configMap", "name"]);
      sources = [{ configMap: volume.configMap }];
    } else {
      deepStrictEqual(Object.keys(volume).sort(), ["name", "projected"]);
      sources = arr(at(volume, "projected.sources"), "sources").map((x, i) => obj(x, `src[${i}]`));
    }
    const referenced = sources.flatMap((source, i) => {
      // The upstream example's bug: a mis-indented name outside configMap. Exactly one key here.
      deepStrictEqual(Object.keys(source), ["configMap"], `sources[${i}]`);
      const cm = obj(source.configMap, `sources[${i}].configMap`);
      equal(cm.optional, true, `${cm.name} must be optional (the agent has defaults)`);
      return arr(cm.items, "items").map((item, j) => {
        const it = obj(item, `items[${j}]`);
        return { name: str(cm.name, "name"), key: str(it.key, "key"), path: str(it.path, "path") };
      });
    });
    deepStrictEqual(referenced, expected, `${path}: upstream ${layout}'s ConfigMaps and keys`);
    // Every one of them is shipped in examples/ for this layout.
    equal(layoutFiles(layouts[layout]).size, expected.length);
  });

  Deno.test(`${path}: file modes are decimal integers that are valid permissions`, () => {
    const modes: number[] = [];
    const collect = (node: unknown) => {
      if (Array.isArray(node)) node.forEach(collect);
      else if (isObject(node)) {
        for (const [key, value] of Object.entries(node)) {
          if (key === "mode" || key === "defaultMode") {
            ok(Number.isInteger(value), `${key}: ${JSON.stringify(value)} is not an integer`);
            ok((value as number) >= 0 && (value as number) <= 0o777, `${key}: ${value} > 0777`);
            modes.push(value as number);
          } else collect(value);
        }
      }
    };
    collect(daemonSet);
    ok(modes.includes(0o444), "defaultMode 292 (0444) expected on the config volume");
    // A leading zero means octal only to a YAML 1.1 reader; the YAML 1.1 vs 1.2 test above
    // catches a different reading, this catches the spelling.
    const text = onlyOne(yamlFiles.filter((f) => f.path === path), "").text;
    ok(!/^\s*(default)?[mM]ode:\s*["']?0/m.test(text), "write modes in decimal (0444 -> 292)");
  });

  Deno.test(`${path}: the xtables lock is the host's /run/xtables.lock`, () => {
    const volumes = arr(podSpec.volumes, "volumes").map((v, i) => obj(v, `volumes[${i}]`));
    const mounts = arr(container.volumeMounts, "volumeMounts").map((m, i) =>
      obj(m, `mounts[${i}]`)
    );
    const mount = onlyOne(mounts.filter((m) => m.mountPath === "/run/xtables.lock"), "lock mount");
    notEqual(mount.readOnly, true, "iptables opens the lock for writing");
    const volume = onlyOne(volumes.filter((v) => v.name === mount.name), "lock volume");
    deepStrictEqual(volume.hostPath, { path: "/run/xtables.lock", type: "FileOrCreate" });
  });

  Deno.test(`${path}: its args and ConfigMaps pass --dry-run as kubelet lays them out`, async () => {
    const files = layoutFiles(layouts[layout]);
    const dir = await kubeletVolume(files);
    try {
      const args = strings(container.args, "args");
      const result = await dryRun(dir, args);
      assertDryRunOk(result, ["ipv4"], `${path} with ${layouts[layout].examples.join(", ")}`);
      for (const config of files.values()) {
        for (const cidr of cidrsIn(config)) ok(result.stdout.includes(`-d ${cidr} `), cidr);
      }
      // The settings come from the ConfigMap: a flag in args that disagrees is refused.
      const conflict = await dryRun(dir, [...args, "--masq-chain=OTHER"]);
      equal(conflict.code, 2, conflict.stderr);
      ok(conflict.stderr.includes("masqChain: is"), conflict.stderr);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("the two layouts run the same agent: only the config volume differs", () => {
  const [v2, v1] = shipped;
  const strip = (podSpec: Json) => ({
    ...podSpec,
    volumes: arr(podSpec.volumes, "volumes").filter((v) => obj(v, "volume").name !== "config"),
  });
  deepStrictEqual(strip(v1.podSpec), strip(v2.podSpec));
  deepStrictEqual(at(v1.daemonSet, "spec.selector"), at(v2.daemonSet, "spec.selector"));
});

// =============================================================================================
// systemd.

Deno.test("the systemd unit runs the binary with every flag and is hardened", async () => {
  const unit = parseUnit(await Deno.readTextFile(`${examplesDir}/systemd/ip-masq-agent.service`));
  const exec = unitValue(unit, "Service", "ExecStart").split(" ");
  equal(exec[0], "/usr/local/bin/ip-masq-agent");
  const values = assertEveryFlagSpelledOut(exec.slice(1), "ExecStart");
  assertDefaults(values, "ExecStart");
  equal(parsedFlags(exec.slice(1), "ExecStart").configDir, "/etc/config");

  const expected: Record<string, string> = {
    Restart: "on-failure",
    ProtectSystem: "strict",
    ProtectHome: "yes",
    PrivateTmp: "yes",
    NoNewPrivileges: "yes",
    ReadWritePaths: "/run",
  };
  for (const [key, value] of Object.entries(expected)) {
    equal(unitValue(unit, "Service", key), value, key);
  }
  const set = (key: string) => unitValue(unit, "Service", key).split(" ").sort();
  deepStrictEqual(set("CapabilityBoundingSet"), ["CAP_NET_ADMIN", "CAP_NET_RAW"]);
  deepStrictEqual(set("AmbientCapabilities"), ["CAP_NET_ADMIN", "CAP_NET_RAW"]);
  deepStrictEqual(set("RestrictAddressFamilies"), ["AF_INET", "AF_INET6", "AF_NETLINK", "AF_UNIX"]);
  // V8 needs writable code pages; this option would kill the agent at start-up.
  notEqual(unit.get("Service")?.get("MemoryDenyWriteExecute")?.at(-1), "yes");
  equal(unitValue(unit, "Install", "WantedBy"), "multi-user.target");
});

Deno.test("the systemd drop-in maps /etc/ip-masq-agent onto the one readable directory", async () => {
  const dropIn = parseUnit(
    await Deno.readTextFile(`${examplesDir}/systemd/ip-masq-agent.service.d/config-dir.conf`),
  );
  const [source, destination] = unitValue(dropIn, "Service", "BindReadOnlyPaths").split(":");
  equal(source, "/etc/ip-masq-agent");
  deepStrictEqual([destination], denoConfig.permissions.agent.read);
});

// =============================================================================================
// Build: deno.json tasks, the permission set, Dockerfile, .dockerignore.

Deno.test("start, compile and compile:arm64 use exactly the agent permission set", () => {
  const tasks = taskCommands();
  for (const name of ["start", "compile", "compile:arm64"]) {
    const tokens = tasks[name].split(/\s+/);
    ok(tokens.includes("--no-prompt"), `${name}: --no-prompt`);
    ok(tokens.includes("-P=agent"), `${name}: -P=agent`);
    const extra = tokens.filter((t) =>
      /^--(allow|deny)-/.test(t) || /^-[ARWNESP]/.test(t) || /^--permission-set/.test(t)
    );
    deepStrictEqual(extra, ["-P=agent"], `${name}: no permission flag besides -P=agent`);
    deepStrictEqual(
      tokens.filter((t) => t.startsWith("--v8-flags")),
      [agentV8Flags],
      `${name}: the agent's V8 flags`,
    );
    equal(tokens.at(-1), "main.ts", `${name}: entry point`);
  }
  equal(taskOption(tasks.compile, "--target"), "x86_64-unknown-linux-gnu");
  equal(taskOption(tasks["compile:arm64"], "--target"), "aarch64-unknown-linux-gnu");
});

Deno.test("the agent permission set reads /etc/config, runs exactly the tools the code runs", () => {
  const set: Record<string, unknown> = denoConfig.permissions.agent;
  deepStrictEqual(set.read, ["/etc/config"]);
  // The backends' own tools, never the plain names (the image's iptables-wrapper), and nft.
  deepStrictEqual(strings(set.run, "run").sort(), [...agentPrograms].sort());
  deepStrictEqual(
    strings(set.run, "run").filter((tool) =>
      tool !== nftProgram && !/-(nft|legacy)(-save|-restore)?$/.test(tool)
    ),
    [],
  );
  // No environment variable is granted, nor silenced: the yaml ES module build reads none (its
  // Node build read LOG_TOKENS/LOG_STREAM).
  equal(set.env, undefined);
  for (const denied of ["write", "net", "ffi", "sys"]) equal(set[denied], false, denied);
  for (const key of Object.keys(set)) {
    ok(
      ["read", "run", "env", "write", "net", "ffi", "sys"].includes(key) || set[key] === false,
      `unexpected grant ${key}: ${JSON.stringify(set[key])}`,
    );
  }
});

async function dockerfile() {
  const { stages, globalArgs } = parseDockerfile(await Deno.readTextFile(`${repoRoot}/Dockerfile`));
  ok(stages.length >= 2);
  const byName = (name: string) => onlyOne(stages.filter((s) => s.name === name), `stage ${name}`);
  return { stages, globalArgs, byName, final: stages[stages.length - 1] };
}

Deno.test("the Dockerfile runs the binary on distroless-iptables with libgcc_s", async () => {
  const { final, byName } = await dockerfile();
  ok(
    /^registry\.k8s\.io\/build-image\/distroless-iptables:v\d+\.\d+\.\d+(@sha256:[0-9a-f]{64})?$/
      .test(final.from),
    `final stage must be a pinned distroless-iptables, got ${final.from}`,
  );
  const ops = final.body.map((i) => i.op);
  for (const op of ["RUN", "SHELL", "CMD", "USER"]) {
    ok(!ops.includes(op), `final stage has ${op}: the image needs no shell and runs as root`);
  }
  deepStrictEqual(
    JSON.parse(onlyOne(final.body.filter((i) => i.op === "ENTRYPOINT"), "ENTRYPOINT").args),
    ["/ip-masq-agent"],
  );
  const copies = final.body.filter((i) => i.op === "COPY").map((i) => i.args);
  ok(copies.includes("--from=build /ip-masq-agent /ip-masq-agent"), copies.join("\n"));
  ok(copies.includes("--from=libgcc /lib/ /lib/"), copies.join("\n"));

  // libgcc: the per-architecture stage picked by TARGETARCH copies libgcc_s.so.1 from cc.
  equal(byName("libgcc").from, "libgcc-${TARGETARCH}");
  equal(byName("cc").from, "gcr.io/distroless/cc-debian12");
  for (const [arch, triplet] of [["amd64", "x86_64-linux-gnu"], ["arm64", "aarch64-linux-gnu"]]) {
    const stage = byName(`libgcc-${arch}`);
    equal(stage.from, "scratch");
    const lib = `/lib/${triplet}/libgcc_s.so.1`;
    deepStrictEqual(stage.body, [{ op: "COPY", args: `--from=cc ${lib} ${lib}` }]);
  }
});

Deno.test("the Dockerfile compiles with the deno.json tasks on the pinned Deno", async () => {
  const { byName } = await dockerfile();
  const build = byName("build");
  const ciRun = await Deno.readTextFile(`${repoRoot}/.ci/run`);
  const ciDeno = /deno@(\d+\.\d+\.\d+)/.exec(ciRun)?.[1];
  equal(build.from, `denoland/deno:${ciDeno}`, "the image's Deno is the one CI tests with");
  equal(build.platform, "$BUILDPLATFORM", "cross-compile instead of emulating");
  const runs = build.body.filter((i) => i.op === "RUN").map((i) => i.args).join("\n");
  ok(runs.includes("deno install --frozen"), runs);
  const tasks = taskCommands();
  for (const [task, arch] of [["compile", "amd64"], ["compile:arm64", "arm64"]]) {
    const output = taskOption(tasks[task], "--output");
    ok(
      runs.includes(`${arch}) deno task ${task} && cp ${output} /ip-masq-agent ;;`),
      `${arch} must run deno task ${task} and take ${output}: ${runs}`,
    );
  }
});

Deno.test(".dockerignore lets in exactly what the build stage copies and main.ts imports", async () => {
  const patterns = (await Deno.readTextFile(`${repoRoot}/.dockerignore`)).split("\n")
    .map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"));
  equal(patterns[0], "*", "allowlist: ignore everything, then re-include");
  const allowed = patterns.slice(1).map((p) => {
    ok(p.startsWith("!"), `unexpected pattern ${p}`);
    return p.slice(1);
  });
  const included = (path: string) =>
    allowed.some((a) => (a.endsWith("/") ? path.startsWith(a) : path === a));

  const { byName } = await dockerfile();
  const sources = byName("build").body.filter((i) => i.op === "COPY").flatMap((i) => {
    ok(!i.args.startsWith("--from"), i.args);
    return i.args.split(/\s+/).slice(0, -1).map((s) => s.replace(/^\.\//, ""));
  });
  const copied = (path: string) =>
    sources.some((s) => (s.endsWith("/") ? path.startsWith(s) : path === s));
  for (const source of sources) ok(included(source), `${source} is ignored by .dockerignore`);

  const info = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "main.ts"],
    cwd: repoRoot,
    stdout: "piped",
  }).output();
  equal(info.code, 0);
  const modules = arr(obj(JSON.parse(decoder.decode(info.stdout)), "info").modules, "modules");
  const local = modules.map((m) => str(obj(m, "module").specifier, "specifier"))
    .filter((s) => s.startsWith("file://"))
    .map((s) => new URL(s).pathname.slice(repoRoot.length + 1));
  ok(local.includes("main.ts") && local.includes("deno.json"), local.join(", "));
  // node_modules/ is made in the build stage by `deno install --frozen` from deno.json and
  // deno.lock (the yaml ES module build is imported from there); a local one must stay out.
  const installed = local.filter((path) => path.startsWith("node_modules/"));
  ok(
    installed.length > 0 && !included("node_modules/yaml/browser/index.js"),
    "node_modules stays out",
  );
  ok(
    byName("build").body.some((i) => i.op === "RUN" && i.args.includes("deno install --frozen")),
    "the build stage installs node_modules from the lock",
  );
  for (const path of [...local.filter((path) => !installed.includes(path)), "deno.lock"]) {
    ok(included(path), `${path} is needed by main.ts but excluded by .dockerignore`);
    ok(copied(path), `${path} is needed by main.ts but not copied into the build stage`);
  }
});

// The README's first command for a newcomer: it prints the rules and nothing alarming, even on a
// machine without iptables, and needs less than the agent's permission set.
Deno.test("deno task demo prints the rules and nothing else, with no iptables in PATH", async () => {
  const demo = taskCommands().demo;
  ok(!demo.includes("-P=") && !demo.includes("--allow-run"), `demo runs no program: ${demo}`);
  const deno = Deno.execPath();
  const output = await new Deno.Command(deno, {
    args: ["task", "demo"],
    cwd: repoRoot,
    clearEnv: true,
    // The machine's PATH minus every directory that holds an iptables tool.
    env: {
      PATH: `${deno.replace(/\/[^/]+$/, "")}:/bin`,
      HOME: Deno.env.get("HOME") ?? "/root",
      NO_COLOR: "1",
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  const stderr = decoder.decode(output.stderr);
  equal(output.code, 0, stderr);
  ok(decoder.decode(output.stdout).startsWith("# ipv4\n*nat\n:IP-MASQ-AGENT - [0:0]\n"));
  deepStrictEqual(
    // deno's own progress: "Task install deno install --frozen", "Task demo ...", and on a fresh
    // clone "Initialize yaml@2.9.1".
    stderr.split("\n").filter((line) =>
      line !== "" && !/^(Task (install|demo) |Initialize yaml@)/.test(line)
    ),
    [],
    "nothing on stderr but deno's own task line",
  );
});

Deno.test("issue 15: deno task start's command prints no deno notice and no colour codes", async () => {
  // No NO_COLOR and stderr a pipe, as under a container runtime: deno colours its notices anyway,
  // so the task runs with -q, which keeps deno's errors and drops its notices.
  const output = await new Deno.Command(Deno.execPath(), {
    args: [...startTokens.slice(1), "--version"],
    cwd: repoRoot,
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "/bin", HOME: Deno.env.get("HOME") ?? "/root" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  equal(output.code, 0);
  equal(decoder.decode(output.stderr), "", "nothing on stderr");
  ok(!decoder.decode(output.stdout).includes("\x1b"), "no colour codes");
  match(decoder.decode(output.stdout), /^ip-masq-agent /);
});

Deno.test("issue 15: deno task compile offline fails up front, clearly, and leaves no dist/", async () => {
  const tasks = denoConfig.tasks;
  deepStrictEqual(tasks.compile.dependencies, ["compile:preflight"]);
  deepStrictEqual(tasks["compile:arm64"].dependencies, ["compile:preflight:arm64"]);
  const work = await Deno.makeTempDir({ prefix: "imt-preflight-" });
  try {
    const run = async (env: Record<string, string>, target = "x86_64-unknown-linux-gnu") => {
      // The task's permissions, with the network denied: offline whatever the machine has.
      const output = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-q",
          "--no-prompt",
          "--allow-env",
          "--allow-read",
          "--allow-write=dist",
          "--deny-net",
          `${repoRoot}/scripts/compile_preflight.ts`,
          target,
        ],
        cwd: work,
        clearEnv: true,
        env: { HOME: work, DENO_DIR: `${work}/deno-dir`, ...env },
        stdout: "piped",
        stderr: "piped",
      }).output();
      return { code: output.code, stderr: new TextDecoder().decode(output.stderr) };
    };
    await Deno.mkdir(`${work}/dist`); // left empty by an earlier failed compile
    const offline = await run({});
    equal(offline.code, 1, offline.stderr);
    match(offline.stderr, /needs the Deno [\d.]+ runtime for that target \(denort\)/);
    match(
      offline.stderr,
      /https:\/\/dl\.deno\.land\/release\/v[\d.]+\/denort-x86_64-unknown-linux-gnu\.zip/,
    );
    match(offline.stderr, /DENORT_BIN=\/path\/to\/denort deno task compile\n/);
    ok(!(await Deno.stat(`${work}/dist`).then(() => true, () => false)), "no empty dist/");
    match((await run({}, "aarch64-unknown-linux-gnu")).stderr, /deno task compile:arm64/);

    const missing = await run({ DENORT_BIN: `${work}/no-such-denort` });
    equal(missing.code, 1);
    match(missing.stderr, /DENORT_BIN=.*no-such-denort is not an executable file/);
    await Deno.writeTextFile(`${work}/denort`, "");
    await Deno.chmod(`${work}/denort`, 0o755);
    const given = await run({ DENORT_BIN: `${work}/denort` });
    equal(given.code, 0, given.stderr);
    equal(given.stderr, "");
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});
