/**
 * The agent in the shape it ships: the image's layout (lab/rootfs.ts: the
 * distroless-iptables tools, the plain iptables names linked to a double of
 * the upstream iptables-wrapper), a read-only root, and the DaemonSet's own
 * container from examples/ip-masq-agent.yaml, ip-masq-agent-v2's layout with
 * the settings in its ConfigMaps (its args, its readiness probe,
 * its securityContext and volumes, turned into an OCI bundle by
 * lab/oci_bundle.ts), run by Debian's runc in a node network namespace where
 * kubelet's hint chain marks one backend. For an nft node and a legacy node:
 *
 * - the rules are applied on the first try, in that backend only, and pod
 *   traffic is masqueraded as the example ConfigMaps say (real connections,
 *   the packet topology of lab/topology.ts);
 * - the manifest's probe command passes, fails once our chain is damaged, and
 *   passes again after SIGHUP repairs it;
 * - a steady-state reconcile writes nothing (rule counters and nft handles
 *   unchanged) and runs only that backend's own binary: never the wrapper,
 *   never the other backend (counted by inotify on the container's copies);
 * - SIGTERM (runc kill) exits 0 and leaves the rules in place.
 *
 * An agent that runs the plain names fails here as the shipped DaemonSet does:
 * the wrapper cannot relink on a read-only root, and its fallback fails with
 * "ERROR: No valid subcommand given."
 *
 * @module
 */

import { deepStrictEqual, equal, fail, ok } from "node:assert/strict";
// @ts-types="npm:yaml"
import { parse, parseAllDocuments } from "yaml";
import { ConfigMapDir } from "../../lab/config_map.ts";
import { type Backend, backends, netnsSkipReason, rootTest } from "../../lab/host.ts";
import type { NetNs } from "../../lab/netns.ts";
import {
  type LabMount,
  type ManifestContainer,
  ociConfig,
  readManifest,
  RuncContainer,
  runcSkipReason,
} from "../../lab/oci_bundle.ts";
import {
  cacheAgentModules,
  hostDenoDir,
  labMounts,
  multiBinaries,
  productionRootfs,
  rootfsSkipReason,
  wrapperLogPath,
  wrapperPath,
} from "../../lab/rootfs.ts";
import { destinations, type Seen, type Topology, withTopology } from "../../lab/topology.ts";
import { eventually } from "../../lab/wait.ts";

const repoRoot = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
const skipReason = netnsSkipReason ?? runcSkipReason ?? rootfsSkipReason;
const container = await readManifest();

/** Our chain: the ConfigMap's masqChain (the settings live there, not in args). */
let chain = "IP-MASQ-AGENT";
const upstreamFallbackMessage =
  "Unable to redirect iptables binaries. (Are you running in an unprivileged pod?)";

// ---------------------------------------------------------------------------------------------
// The example ConfigMaps, and what they mean for the topology's destinations.

interface ConfigMapFiles {
  /** Key (file name) → content, every ConfigMap the manifest projects. */
  readonly files: Record<string, string>;
  readonly nonMasqueradeCidrs: readonly string[];
  readonly masqLinkLocal: boolean;
}

async function exampleConfigMaps(): Promise<ConfigMapFiles> {
  const files: Record<string, string> = {};
  // The v2 layout's ConfigMaps, which examples/ip-masq-agent.yaml projects under their keys.
  for (const name of ["config-custom.yaml", "config-reconciled.yaml"]) {
    const text = await Deno.readTextFile(`${repoRoot}/examples/${name}`);
    for (const doc of parseAllDocuments(text, { version: "1.1" }) as { toJS(): unknown }[]) {
      const data = (doc.toJS() as { data?: Record<string, string> }).data ?? {};
      Object.assign(files, data);
    }
  }
  const cidrs: string[] = [];
  let masqLinkLocal = false;
  for (const text of Object.values(files)) {
    const config = parse(text) as {
      nonMasqueradeCIDRs?: string[];
      masqLinkLocal?: boolean;
      masqChain?: string;
    };
    cidrs.push(...config.nonMasqueradeCIDRs ?? []);
    if (config.masqChain) chain = config.masqChain;
    masqLinkLocal ||= config.masqLinkLocal === true;
  }
  return { files, nonMasqueradeCidrs: cidrs, masqLinkLocal };
}

function ipv4(address: string): number {
  return address.split(".").reduce((n, octet) => n * 256 + Number(octet), 0);
}

function inCidr(address: string, cidr: string): boolean {
  const [network, bits] = cidr.split("/");
  const size = 2 ** (32 - Number(bits));
  return Math.floor(ipv4(address) / size) === Math.floor(ipv4(network) / size);
}

/** The topology's own IPv4 addresses: a CIDR holding one of them is no place for a server. */
const topologyAddresses = ["10.244.1.1", "10.244.1.2", "192.0.2.1", "192.0.2.2"];

/**
 * One destination inside each IPv4 CIDR the ConfigMaps exempt (its network
 * address + 10, added to ext's loopback), and the topology's destinations
 * outside all of them: what ext should see for each.
 */
function expectedSources(config: ConfigMapFiles): {
  extra: string[];
  expected: Record<string, Seen>;
} {
  const exempt = config.nonMasqueradeCidrs.filter((cidr) =>
    !cidr.includes(":") && !topologyAddresses.some((a) => inCidr(a, cidr))
  );
  const extra = exempt.map((cidr) => {
    const [network] = cidr.split("/");
    const octets = network.split(".");
    octets[3] = String(Number(octets[3]) + 10);
    return octets.join(".");
  });
  ok(extra.length >= 2, `the example ConfigMaps should exempt some CIDRs: ${exempt}`);
  const expected: Record<string, Seen> = Object.fromEntries(extra.map((a) => [a, "pod"]));
  for (const address of [destinations.testNet2, destinations.shared, destinations.private]) {
    const listed = config.nonMasqueradeCidrs.some((c) => !c.includes(":") && inCidr(address, c));
    expected[address] = listed ? "pod" : "node";
  }
  expected[destinations.linkLocal] = config.masqLinkLocal ? "node" : "pod";
  return { extra, expected };
}

// ---------------------------------------------------------------------------------------------
// Which of the container's programs ran: inotify on the container's own copies of the two
// multi binaries and the wrapper (bind-mounted over the root's, so nothing outside this
// container touches them). An exec opens the file (IN_OPEN) and the process's exit closes it
// (IN_CLOSE_NOWRITE). Deno.watchFs reports neither, hence libc through FFI. The kernel merges
// an event into an identical one still unread; the agent runs one tool at a time, and the
// queue is drained every few milliseconds, so none is lost that matters here.

const IN_NONBLOCK = 0o4000;
const IN_CLOEXEC = 0o2000000;
const IN_OPEN = 0x20;
const IN_CLOSE_NOWRITE = 0x10;

type Watched = "nft" | "legacy" | "wrapper";

class ExecWatch {
  readonly #libc = Deno.dlopen("libc.so.6", {
    inotify_init1: { parameters: ["i32"], result: "i32" },
    inotify_add_watch: { parameters: ["i32", "buffer", "u32"], result: "i32" },
    read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
    close: { parameters: ["i32"], result: "i32" },
  });
  readonly #fd: number;
  readonly #names = new Map<number, Watched>();
  readonly #buffer = new Uint8Array(64 * 1024);
  readonly opened: Record<Watched, number> = { nft: 0, legacy: 0, wrapper: 0 };
  readonly exited: Record<Watched, number> = { nft: 0, legacy: 0, wrapper: 0 };

  constructor(files: Record<Watched, string>) {
    this.#fd = this.#libc.symbols.inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (this.#fd < 0) throw new Error("inotify_init1 failed");
    for (const [name, path] of Object.entries(files) as [Watched, string][]) {
      const wd = this.#libc.symbols.inotify_add_watch(
        this.#fd,
        new TextEncoder().encode(`${path}\0`),
        IN_OPEN | IN_CLOSE_NOWRITE,
      );
      if (wd < 0) throw new Error(`inotify_add_watch ${path} failed`);
      this.#names.set(wd, name);
    }
  }

  /** Counts what happened since the last call. */
  drain(): void {
    for (;;) {
      const count = Number(this.#libc.symbols.read(this.#fd, this.#buffer, BigInt(65536)));
      if (count <= 0) return;
      const view = new DataView(this.#buffer.buffer, 0, count);
      for (let at = 0; at < count; at += 16 + view.getUint32(at + 12, true)) {
        const name = this.#names.get(view.getInt32(at, true));
        const mask = view.getUint32(at + 4, true);
        if (!name) continue;
        if (mask & IN_OPEN) this.opened[name]++;
        if (mask & IN_CLOSE_NOWRITE) this.exited[name]++;
      }
    }
  }

  snapshot(): { opened: Record<Watched, number>; exited: Record<Watched, number> } {
    this.drain();
    return { opened: { ...this.opened }, exited: { ...this.exited } };
  }

  close(): void {
    this.#libc.symbols.close(this.#fd);
    this.#libc.close();
  }
}

// ---------------------------------------------------------------------------------------------
// The node's tables, read from outside the container with the host's own tools.

function other(mode: Backend): Backend {
  return mode === "nft" ? "legacy" : "nft";
}

async function natSave(node: NetNs, mode: Backend, counters = false): Promise<string> {
  const args = [`iptables-${mode}-save`, ...(counters ? ["-c"] : []), "-t", "nat"];
  return (await node.exec(args, { check: true })).stdout;
}

/** Every nat rule with its counters, and for nft each rule's handle: a rewrite changes both. */
async function writeWitness(node: NetNs, mode: Backend): Promise<string> {
  const save = (await natSave(node, mode, true)).split("\n").filter((l) => !l.startsWith("#"));
  const handles = mode === "nft"
    ? (await node.exec(["nft", "-a", "list", "table", "ip", "nat"], { check: true })).stdout
    : "";
  return [...save, handles].join("\n");
}

/** Our chain and its rules and our jump, without counters (`-c` puts them first). */
function ourRules(save: string): string[] {
  return save.split("\n").map((line) => line.replace(/^\[\d+:\d+\] /, "")).filter((line) =>
    line.startsWith(`:${chain} `) || line.startsWith(`-A ${chain} `) || line.includes(`-j ${chain}`)
  ).map((line) => line.replace(/ \[\d+:\d+\]$/, ""));
}

// ---------------------------------------------------------------------------------------------
// The scenario.

function describe(c: RuncContainer): string {
  return `container stderr:\n${c.stderr}\ncontainer stdout:\n${c.stdout}`;
}

/** Mount points the manifest's volumes need in the root: files for file hostPaths. */
function mountPoints(manifest: ManifestContainer) {
  const isFile = (m: ManifestContainer["mounts"][number]) =>
    m.volume.kind === "hostPath" && /^File/.test(m.volume.type ?? "");
  return {
    mountDirs: manifest.mounts.filter((m) => !isFile(m)).map((m) => m.mountPath),
    mountFiles: manifest.mounts.filter(isFile).map((m) => m.mountPath),
  };
}

let modulesCached: Promise<void> | undefined;

async function scenario(mode: Backend, topology: Topology): Promise<void> {
  const rootfs = await productionRootfs(mountPoints(container));
  await (modulesCached ??= cacheAgentModules());
  const config = await exampleConfigMaps();
  const { extra, expected } = expectedSources(config);
  for (const address of extra) {
    await topology.ext.exec(["ip", "addr", "add", `${address}/32`, "dev", "lo"], { check: true });
  }
  // What kubelet leaves on a node whose iptables is `mode`, and nothing in the other backend.
  for (const tool of [`iptables-${mode}`, `ip6tables-${mode}`]) {
    await topology.node.exec([tool, "-t", "mangle", "-N", "KUBE-IPTABLES-HINT"], { check: true });
  }

  const work = await Deno.makeTempDir({ prefix: `imt-shape-${mode}-` });
  const watchDir = `${work}/watched`;
  let runc: RuncContainer | undefined;
  let watch: ExecWatch | undefined;
  try {
    // /etc/config as kubelet projects the two optional ConfigMaps, files at defaultMode.
    const configMount = container.mounts.find((m) => m.volume.kind === "projected");
    if (!configMount || configMount.volume.kind !== "projected") fail("no projected volume");
    const configDir = `${work}/config`;
    await ConfigMapDir.create(configDir, config.files);
    for (const key of Object.keys(config.files)) {
      await Deno.chmod(`${configDir}/..data/${key}`, configMount.volume.defaultMode ?? 0o644);
    }

    await Deno.mkdir(`${work}/lab`);
    const wrapperLogFile = `${work}/lab${wrapperLogPath.slice(labMounts.lab.length)}`;
    await Deno.writeTextFile(wrapperLogFile, "");
    await Deno.mkdir(watchDir);
    const watched: Record<Watched, string> = {
      nft: multiBinaries.nft,
      legacy: multiBinaries.legacy,
      wrapper: wrapperPath,
    };
    const copies = {} as Record<Watched, string>;
    const privateCopies: LabMount[] = [];
    for (const [name, path] of Object.entries(watched) as [Watched, string][]) {
      copies[name] = `${watchDir}/${name}`;
      await Deno.copyFile(`${rootfs.path}${path}`, copies[name]);
      privateCopies.push({ source: copies[name], destination: path, readOnly: true });
    }
    watch = new ExecWatch(copies);

    const bundle = await ociConfig({
      container,
      rootfs,
      netnsPath: `/run/netns/${topology.node.name}`,
      volumeSources: { [configMount.name]: configDir },
      labMounts: [
        { source: repoRoot, destination: labMounts.repo, readOnly: true },
        { source: await hostDenoDir(), destination: labMounts.denoDir, readOnly: true },
        { source: `${work}/lab`, destination: labMounts.lab, readOnly: false },
        ...privateCopies,
      ],
      // Lab-only: where the stand-in's deno finds its modules, and no update check.
      env: ["HOME=/root", `DENO_DIR=${labMounts.denoDir}`, "DENO_NO_UPDATE_CHECK=1"],
    });
    runc = await RuncContainer.run(work, bundle, `imt-shape-${mode}-${Deno.pid}`);
    const wrapperLog = () => Deno.readTextFile(wrapperLogFile);

    // Applied on the first try: no warning or error before the rules are written.
    await runc.waitForLog(/rules written \(ipv4\)/);
    const beforeRules = runc.stderr.slice(0, runc.stderr.search(/rules written \(ipv4\)/));
    const complaints = beforeRules.split("\n").filter((line) => /^[WEF]\d{4} /.test(line));
    deepStrictEqual(complaints, [], `warnings before the first write\n${describe(runc)}`);
    equal(await wrapperLog(), "", `the agent ran the image's iptables-wrapper\n${describe(runc)}`);
    ok(
      (await natSave(topology.node, mode)).includes(`:${chain} `),
      `no ${chain} chain in the ${mode} backend\n${describe(runc)}`,
    );

    deepStrictEqual(
      await topology.sourcesSeen(Object.keys(expected)),
      expected,
      "pod traffic as the example ConfigMaps say (node = masqueraded, pod = not)",
    );

    const probe = async (want: number, why: string) => {
      const result = await runc!.exec(container.probeCommand);
      equal(
        result.code,
        want,
        `${why}: the readiness probe exited ${result.code}\nprobe stdout:\n${result.stdout}\n` +
          `probe stderr:\n${result.stderr}\n${describe(runc!)}`,
      );
    };
    await probe(0, "in sync");

    // Drift: one of our rules deleted behind the agent's back.
    await topology.node.exec([`iptables-${mode}`, "-t", "nat", "-D", chain, "1"], { check: true });
    await probe(1, "after deleting a rule of our chain");
    await runc.kill("HUP");
    await runc.waitForLog(/drift repaired \(ipv4\)/);
    await probe(0, "after SIGHUP repaired the drift");

    // Steady state. Traffic first, so that a rewrite would show as counters back at zero.
    deepStrictEqual(await topology.sourcesSeen([destinations.testNet2]), {
      [destinations.testNet2]: "node",
    });
    const before = await writeWitness(topology.node, mode);
    ok(/\[[1-9]\d*:\d+\] -A .* -j MASQUERADE/.test(before), `no packet counted:\n${before}`);
    const start = watch.snapshot();
    const ran = (name: Watched) => watch!.snapshot().exited[name] - start.exited[name];
    // Two SIGHUPs: the second reconcile starts only once the first has finished (writes
    // included), so when its save has exited, the first reconcile is complete.
    await runc.kill("HUP");
    await eventually(`a ${mode} tool run after SIGHUP`, () => ran(mode) >= 1, 15_000, 5);
    await runc.kill("HUP");
    await eventually(`a second reconcile's ${mode} tool run`, () => ran(mode) >= 2, 15_000, 5);
    const after = watch.snapshot();
    equal(await writeWitness(topology.node, mode), before, "a steady-state reconcile wrote");
    equal(after.opened[other(mode)] - start.opened[other(mode)], 0, `${other(mode)} ran`);
    equal(after.opened.wrapper - start.opened.wrapper, 0, "the wrapper ran");

    // SIGTERM: exit 0, rules left in place.
    await runc.kill("TERM");
    const exit = await runc.wait();
    equal(exit.code, 0, `exit status after SIGTERM\n${describe(runc)}`);
    deepStrictEqual(
      ourRules(await natSave(topology.node, mode)),
      ourRules(before),
      "rules in place after SIGTERM",
    );

    // Over the container's whole life: never the wrapper, nothing in the other backend.
    equal(watch.snapshot().opened.wrapper, 0, "the wrapper ran at some point");
    equal(await wrapperLog(), "", "the wrapper logged a call");
    deepStrictEqual(ourRules(await natSave(topology.node, other(mode))), [], "other backend");

    // The double is faithful: what the old agent ran, the plain name, detects this node's
    // backend from kubelet's hint, cannot relink on the read-only root, and fails as shipped.
    const agentProcess = bundle.process as Record<string, unknown>;
    await Deno.mkdir(`${work}/plain`);
    const plain = await RuncContainer.run(`${work}/plain`, {
      ...bundle,
      process: { ...agentProcess, args: ["/usr/sbin/iptables-save", "-t", "nat"] },
    }, `imt-shape-plain-${mode}-${Deno.pid}`);
    try {
      const result = await plain.wait();
      const detail = `exit ${result.code}, stderr:\n${result.stderr}`;
      equal(result.code, 1, detail);
      ok(result.stderr.startsWith(upstreamFallbackMessage), detail);
      ok(result.stderr.includes("ERROR: No valid subcommand given."), detail);
      // Each multi binary lists its own names: the fallback ran this node's backend.
      ok(result.stderr.includes(` * iptables-${mode}\n`), detail);
      ok(!result.stderr.includes(` * iptables-${other(mode)}\n`), detail);
      equal(await wrapperLog(), "/usr/sbin/iptables-save -t nat\n");
    } finally {
      await plain.dispose();
    }
  } finally {
    await runc?.dispose();
    watch?.close();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

for (const mode of backends) {
  const name = `${mode} node: the DaemonSet's container (image layout, read-only root, the ` +
    `manifest's args, probe and securityContext, under runc) applies, probes, resyncs ` +
    `quietly and stops cleanly`;
  rootTest({
    name,
    skipReason,
    fn: () => withTopology((topology) => scenario(mode, topology)),
  });
}
