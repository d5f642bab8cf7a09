/**
 * A three-namespace network for end-to-end packet tests, created and deleted
 * by each test:
 *
 * ```
 *  pod (10.244.1.2, fd00:244::2)
 *   p0 ── n0   node (10.244.1.1, fd00:244::1; forwarding; the agent runs here)
 *              n1 (192.0.2.1, 2001:db8:ff::1, fe80::1) ── e0   ext (192.0.2.2, 2001:db8:ff::2, fe80::2)
 * ```
 *
 * `ext` holds the destinations on its loopback (documentation, shared,
 * link-local and private ranges) and runs one source-echo server answering
 * every connection with the source address and port it saw. Every route ends
 * in these namespaces: nothing leaves the machine.
 *
 * @module
 */

import { NetNs } from "./netns.ts";
import type { ConnectResult } from "./source_echo_server.ts";

export const serverPort = 8080;

export const pod = { ipv4: "10.244.1.2", ipv6: "fd00:244::2" } as const;
/** The node's ext-facing addresses: what a masqueraded connection shows as its source. */
export const nodeExt = { ipv4: "192.0.2.1", ipv6: "2001:db8:ff::1", linkLocal: "fe80::1" } as const;
const nodePodSide = { ipv4: "10.244.1.1", ipv6: "fd00:244::1" } as const;
const extLink = { ipv4: "192.0.2.2", ipv6: "2001:db8:ff::2", linkLocal: "fe80::2" } as const;

/** Addresses on ext's loopback, reachable from the pod through the node. */
export const destinations = {
  /** TEST-NET-2, outside RFC 1918. */
  testNet2: "198.51.100.10",
  /** TEST-NET-3, outside RFC 1918. */
  testNet3: "203.0.113.10",
  /** RFC 6598 shared address space. */
  shared: "100.64.0.10",
  /** Inside 10.0.0.0/8: not masqueraded by default. */
  private: "10.99.0.10",
  /** IPv4 link-local, routed through the node. */
  linkLocal: "169.254.10.10",
  /** IPv6 documentation prefix, two /48s so one can be listed and the other not. */
  doc6a: "2001:db8:1::10",
  doc6b: "2001:db8:2::10",
} as const;

/** ext's link-local address on the node link, as the node dials it (with the zone). */
export const extLinkLocalFromNode = `${extLink.linkLocal}%n1`;

const serverScript = new URL("./source_echo_server.ts", import.meta.url).pathname;
const denoEnv = { DENO_NO_UPDATE_CHECK: "1" };

/** What ext saw: "node" (masqueraded), "pod" (not), the raw source otherwise, or the error. */
export type Seen = "node" | "pod" | string;

export function seenAs(result: ConnectResult): Seen {
  if (!result.answer) return `error: ${result.error}`;
  const source = result.answer.source;
  if (source === nodeExt.ipv4 || source === nodeExt.ipv6 || source === nodeExt.linkLocal) {
    return "node";
  }
  if (source === pod.ipv4 || source === pod.ipv6) return "pod";
  return source;
}

export function target(address: string, port = serverPort): string {
  return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
}

export class Topology {
  readonly #server: Deno.ChildProcess;
  #serverOutput = "";

  private constructor(
    readonly pod: NetNs,
    readonly node: NetNs,
    readonly ext: NetNs,
    server: Deno.ChildProcess,
  ) {
    this.#server = server;
  }

  /** Builds the network and starts the server; on any failure, removes what it made. */
  static async create(): Promise<Topology> {
    const made: NetNs[] = [];
    let server: Deno.ChildProcess | undefined;
    try {
      for (const label of ["pod", "node", "ext"]) made.push(await NetNs.create(label));
      const [podNs, nodeNs, extNs] = made;
      await configure(podNs, nodeNs, extNs);
      server = new Deno.Command("ip", {
        args: [
          "netns",
          "exec",
          extNs.name,
          Deno.execPath(),
          "run",
          "--no-prompt",
          "--allow-net",
          serverScript,
          "serve",
          String(serverPort),
        ],
        env: denoEnv,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const topology = new Topology(podNs, nodeNs, extNs, server);
      await topology.#waitForServer();
      return topology;
    } catch (error) {
      await killServer(server);
      for (const ns of made) await ns.dispose();
      throw error;
    }
  }

  async #waitForServer(timeoutMs = 15_000): Promise<void> {
    const decoder = new TextDecoder();
    const collect = async (stream: ReadableStream<Uint8Array>) => {
      for await (const chunk of stream) this.#serverOutput += decoder.decode(chunk);
    };
    const done = Promise.all([collect(this.#server.stdout), collect(this.#server.stderr)]);
    const deadline = Date.now() + timeoutMs;
    while (!this.#serverOutput.includes("listening")) {
      const exited = await Promise.race([
        done.then(() => true),
        new Promise<false>((resolve) => setTimeout(() => resolve(false), 20)),
      ]);
      if (exited || Date.now() > deadline) {
        throw new Error(`the source-echo server did not start:\n${this.#serverOutput}`);
      }
    }
  }

  /** Connects from `from` to each target in turn (fresh connections, fresh source ports). */
  async connect(
    targets: readonly string[],
    options: { from?: "pod" | "node"; timeoutMs?: number } = {},
  ): Promise<ConnectResult[]> {
    const ns = options.from === "node" ? this.node : this.pod;
    const result = await ns.exec([
      Deno.execPath(),
      "run",
      "--no-prompt",
      "--allow-net",
      serverScript,
      "connect",
      String(options.timeoutMs ?? 2000),
      ...targets,
    ], { env: denoEnv });
    if (result.code !== 0) {
      throw new Error(`the connect client exited ${result.code}: ${result.stderr}`);
    }
    return result.stdout.trim().split("\n").map((line) => JSON.parse(line) as ConnectResult);
  }

  /** For each destination address, who ext saw as the source of a connection from the pod. */
  async sourcesSeen(addresses: readonly string[]): Promise<Record<string, Seen>> {
    const results = await this.connect(addresses.map((address) => target(address)));
    return Object.fromEntries(results.map((result, i) => [addresses[i], seenAs(result)]));
  }

  async dispose(): Promise<void> {
    await killServer(this.#server);
    for (const ns of [this.pod, this.node, this.ext]) await ns.dispose();
  }
}

async function killServer(server: Deno.ChildProcess | undefined): Promise<void> {
  if (!server) return;
  try {
    server.kill("SIGKILL");
  } catch {
    // Already exited.
  }
  await server.status;
}

/** Creates a topology, runs `fn`, and always deletes the namespaces and stops the server. */
export async function withTopology(fn: (topology: Topology) => Promise<void>): Promise<void> {
  const topology = await Topology.create();
  try {
    await fn(topology);
  } finally {
    await topology.dispose();
  }
}

async function ip(ns: NetNs, ...args: string[]): Promise<void> {
  await ns.exec(["ip", ...args], { check: true });
}

async function veth(
  a: NetNs,
  aName: string,
  aIndex: number,
  b: NetNs,
  bName: string,
  bIndex: number,
) {
  await ip(
    a,
    "link",
    "add",
    aName,
    "index",
    String(aIndex),
    "type",
    "veth",
    "peer",
    "name",
    bName,
    "index",
    String(bIndex),
    "netns",
    b.name,
  );
}

async function configure(podNs: NetNs, nodeNs: NetNs, extNs: NetNs): Promise<void> {
  // Before any interface exists, so every one inherits it: no DAD wait, IPv6 works at once.
  for (const ns of [podNs, nodeNs, extNs]) {
    await ns.exec([
      "sysctl",
      "-qw",
      "net.ipv6.conf.all.accept_dad=0",
      "net.ipv6.conf.default.accept_dad=0",
    ], { check: true });
  }
  await nodeNs.exec(
    ["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"],
    { check: true },
  );
  // Distinct interface indexes on the two ends: the kernel then applies the carrier change
  // at once instead of up to a second later (a veth whose peer has its own index looks like
  // itself to the link watcher, which then rate-limits the event).
  await veth(nodeNs, "n0", 10, podNs, "p0", 11);
  await veth(nodeNs, "n1", 12, extNs, "e0", 13);

  await ip(podNs, "addr", "add", `${pod.ipv4}/24`, "dev", "p0");
  await ip(podNs, "addr", "add", `${pod.ipv6}/64`, "dev", "p0", "nodad");
  await ip(podNs, "link", "set", "p0", "up");
  await ip(podNs, "route", "add", "default", "via", nodePodSide.ipv4);
  await ip(podNs, "-6", "route", "add", "default", "via", nodePodSide.ipv6);

  await ip(nodeNs, "addr", "add", `${nodePodSide.ipv4}/24`, "dev", "n0");
  await ip(nodeNs, "addr", "add", `${nodePodSide.ipv6}/64`, "dev", "n0", "nodad");
  await ip(nodeNs, "addr", "add", `${nodeExt.ipv4}/24`, "dev", "n1");
  await ip(nodeNs, "addr", "add", `${nodeExt.ipv6}/64`, "dev", "n1", "nodad");
  await ip(nodeNs, "addr", "add", `${nodeExt.linkLocal}/64`, "dev", "n1", "nodad");
  // Only the fixed link-local addresses, so the node's one is known in advance.
  await ip(nodeNs, "link", "set", "n1", "addrgenmode", "none");
  await ip(extNs, "link", "set", "e0", "addrgenmode", "none");
  await ip(nodeNs, "link", "set", "n0", "up");
  await ip(nodeNs, "link", "set", "n1", "up");
  await ip(nodeNs, "route", "add", "default", "via", extLink.ipv4);
  await ip(nodeNs, "-6", "route", "add", "default", "via", extLink.ipv6);

  await ip(extNs, "addr", "add", `${extLink.ipv4}/24`, "dev", "e0");
  await ip(extNs, "addr", "add", `${extLink.ipv6}/64`, "dev", "e0", "nodad");
  await ip(extNs, "addr", "add", `${extLink.linkLocal}/64`, "dev", "e0", "nodad");
  await ip(extNs, "link", "set", "e0", "up");
  for (const address of Object.values(destinations)) {
    const prefix = address.includes(":") ? "128" : "32";
    await ip(extNs, "addr", "add", `${address}/${prefix}`, "dev", "lo");
  }
  await ip(extNs, "route", "add", "default", "via", nodeExt.ipv4);
  await ip(extNs, "-6", "route", "add", "default", "via", nodeExt.ipv6);
  for (
    const [ns, name] of [[podNs, "p0"], [nodeNs, "n0"], [nodeNs, "n1"], [extNs, "e0"]] as const
  ) {
    await waitUntilUp(ns, name);
  }
}

/** Until the kernel reports the link up, it drops what is sent and IPv6 is not ready on it. */
async function waitUntilUp(ns: NetNs, name: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { stdout } = await ns.exec(["cat", `/sys/class/net/${name}/operstate`], { check: true });
    if (stdout.trim() === "up") return;
    if (Date.now() > deadline) throw new Error(`${name} in ${ns.name} is still ${stdout.trim()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
