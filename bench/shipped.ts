/**
 * Issue 15 item 7: RSS as the shipped DaemonSet runs the agent: its own
 * container args (no `--iptables-mode`, so auto: the start-up detection and
 * the other-backend check run as on a node) and its ConfigMap, on an empty
 * node and on the kube-proxy node, per backend. On a legacy node the
 * detection used to dump every legacy table (102 MiB beside kube-proxy's
 * 50,000 rules, against 51 on an empty node).
 *
 * @module
 */

// @ts-types="npm:yaml"
import { parseAllDocuments } from "yaml";
import type { Backend } from "../lab/host.ts";
import { ConfigMapDir } from "../lab/config_map.ts";
import { repoRoot } from "../lab/agent_process.ts";
import { sleep } from "../lab/wait.ts";
import {
  agentCommand,
  fmt,
  type Memory,
  memory,
  progress,
  Resources,
  startAgent,
} from "./harness.ts";
import { describeNode, kubeProxyNode, loadKubeProxyTable, type NodeKind } from "./node.ts";
import { type Options, rerunArgs } from "./options.ts";
import { type Row, verdict } from "./report.ts";
import { countingTools } from "./tools.ts";
import { quoted } from "./upstream.ts";

/** The DaemonSet the README's quick start applies, and the ConfigMaps it mounts. */
export const shippedManifest = "examples/ip-masq-agent.yaml";

interface Shipped {
  /** The container's args, `--config-dir` left out (the bench mounts the config there). */
  readonly args: string[];
  /** The mounted files: each ConfigMap key of the shipped examples, by its path in the volume. */
  readonly files: Record<string, string>;
}

type Json = Record<string, unknown>;

function docs(text: string): Json[] {
  return parseAllDocuments(text, { version: "1.1" }).map((doc) => doc.toJS() as Json);
}

/** The manifest's args, and the example ConfigMaps' data at the paths its volume mounts them. */
export async function shippedAgent(): Promise<Shipped> {
  const examples = `${repoRoot}/examples`;
  const all: Json[] = [];
  for await (const entry of Deno.readDir(examples)) {
    if (entry.isFile && /\.ya?ml$/.test(entry.name)) {
      all.push(...docs(await Deno.readTextFile(`${examples}/${entry.name}`)));
    }
  }
  const daemonSet = docs(await Deno.readTextFile(`${repoRoot}/${shippedManifest}`))
    .find((doc) => doc.kind === "DaemonSet");
  // deno-lint-ignore no-explicit-any -- a manifest walked by its known shape
  const pod = (daemonSet as any)?.spec?.template?.spec;
  const args: string[] = (pod?.containers?.[0]?.args ?? []).filter((arg: string) =>
    !arg.startsWith("--config-dir=")
  );
  const files: Record<string, string> = {};
  for (const volume of pod?.volumes ?? []) {
    const sources = volume.projected?.sources ?? (volume.configMap ? [volume] : []);
    for (const source of sources) {
      const configMap = all.find((doc) =>
        // deno-lint-ignore no-explicit-any -- as above
        doc.kind === "ConfigMap" && (doc.metadata as any)?.name === source.configMap?.name
      );
      for (const item of source.configMap?.items ?? []) {
        const value = (configMap?.data as Record<string, string> | undefined)?.[item.key];
        if (value !== undefined) files[item.path] = value;
      }
    }
  }
  return { args, files };
}

async function rssAsShipped(
  res: Resources,
  backend: Backend,
  node: NodeKind,
  options: Options,
): Promise<{ memory: Memory; command: string; mode: string }> {
  const table = kubeProxyNode(options.services);
  const shipped = await shippedAgent();
  progress(`as shipped, ${backend}: ${describeNode(node, table)}; ${shipped.args.join(" ")}`);
  const root = await res.tempDir("imb-shipped-");
  const { log, bin } = await countingTools(backend, root);
  const ns = await res.namespace("shipped");
  if (node === "kube-proxy") await loadKubeProxyTable(ns, bin, backend, table);
  const dir = await ConfigMapDir.create(`${root}/config`, shipped.files);
  // The lab names the backend unless the args do: auto is the manifest's (the default).
  const args = shipped.args.some((arg) => arg.startsWith("--iptables-mode="))
    ? shipped.args
    : [...shipped.args, "--iptables-mode=auto"];
  const { agent, pid } = await startAgent(
    res,
    { ns, binDir: log.binDir, configDir: dir.path, args },
    /^(rules written|desired ipv4 rules)/,
  );
  // Start-up done (detection, the other backend's check, the first reconcile): let it settle.
  await sleep(3000);
  const mem = await memory(pid);
  const mode = /iptables mode (\S+) \((.*?)\)( |$)/m.exec(agent.stderr);
  await res.stopAgent(agent);
  await res.disposeNamespace(ns);
  progress(
    `   RSS ${fmt(mem.rss, 1)} MiB (peak ${fmt(mem.hwm, 1)}); mode ${mode?.[1]} (${mode?.[2]})`,
  );
  return {
    memory: mem,
    command: `${agentCommand(args)} (${describeNode(node, table)}; the ConfigMaps of ` +
      `${shippedManifest})`,
    mode: mode ? `${mode[1]} (${mode[2]})` : "?",
  };
}

/** The kube-proxy node against the empty one, as shipped, per backend. */
export async function shippedRows(
  res: Resources,
  backend: Backend,
  options: Options,
): Promise<Row[]> {
  const empty = await rssAsShipped(res, backend, "empty", options);
  const kube = await rssAsShipped(res, backend, "kube-proxy", options);
  const delta = kube.memory.rss - empty.memory.rss;
  return [{
    group: "memory",
    measurement: `as shipped (${shippedManifest}: its args, --iptables-mode=auto, its ` +
      `ConfigMaps), 3 s after start-up: RSS on the kube-proxy node vs an empty node (peaks ` +
      `${fmt(kube.memory.hwm, 1)} / ${fmt(empty.memory.hwm, 1)} MiB; chose ${kube.mode})`,
    backend,
    result: `${fmt(kube.memory.rss, 1)} MiB vs ${fmt(empty.memory.rss, 1)} MiB ` +
      `(${delta >= 0 ? "+" : ""}${fmt(delta, 1)})`,
    goal: "≤ the empty node + 5 MiB",
    quoted: quoted.none,
    verdict: verdict(delta <= 5),
    command: kube.command,
    rerun: rerunArgs("shipped", backend),
  }];
}
