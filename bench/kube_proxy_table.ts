/**
 * The nat (and mangle) tables of a busy Kubernetes node, as one
 * `iptables-restore` input: what kube-proxy in iptables mode writes for N
 * services (KUBE-SERVICES, KUBE-SVC-* with `-m statistic` load balancing,
 * KUBE-SEP-* with DNAT, KUBE-EXT-* and KUBE-NODEPORTS for NodePorts,
 * KUBE-MARK-MASQ, KUBE-POSTROUTING), a Docker bridge and a CNI bridge
 * masquerading in POSTROUTING, and the canary and `KUBE-IPTABLES-HINT`
 * chains kubelet and kube-proxy leave in mangle. Deterministic: the same
 * options give the same bytes, so runs compare. Rule spellings follow
 * kube-proxy's `syncProxyRules` (pkg/proxy/iptables/proxier.go, 1.28+); the
 * chain hashes are its `portProtoHash` (base32 of SHA-256, 16 characters).
 * Run on its own, it prints the restore input (`--services=N`).
 *
 * @module
 */

import { createHash } from "node:crypto";

export interface KubeProxyTableOptions {
  /** Service ports (one port per service). 5,000 gives about 50,000 nat rules. */
  readonly services: number;
  /** Endpoints per service, cycled over the services. Default: 2, 3, 3 (2.67 on average). */
  readonly endpointCycle?: readonly number[];
  /** Every `nodePortEvery`th service is also a NodePort service. Default 10. */
  readonly nodePortEvery?: number;
}

export interface KubeProxyTable {
  /** `iptables-restore` input (no `--noflush` needed: it names every chain it fills). */
  readonly restoreInput: string;
  /** `-A` lines in the nat table. */
  readonly natRules: number;
  /** Chains declared in the nat table, built-in ones included. */
  readonly natChains: number;
  readonly services: number;
  readonly endpoints: number;
}

/** kube-proxy's masquerade mark (`--iptables-masquerade-bit=14`). */
const masqueradeMark = "0x4000";
const clusterCidr = "10.244.0.0/16";
const base32Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

function base32(bytes: Uint8Array): string {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += base32Alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  if (bits > 0) out += base32Alphabet[(value << (5 - bits)) & 31];
  return out;
}

/** kube-proxy's chain suffix: the first 16 base32 characters of SHA-256(text). */
function portProtoHash(text: string): string {
  return base32(createHash("sha256").update(text).digest()).slice(0, 16);
}

/** The k-th address of a /12 or /16 starting at `base` (a.b.0.0), skipping .0 and .255. */
function address(firstOctet: number, secondOctet: number, k: number): string {
  const host = (k % 254) + 1;
  const third = Math.floor(k / 254);
  return `${firstOctet}.${secondOctet + (third >> 8)}.${third & 255}.${host}`;
}

/** kube-proxy's `computeProbability`: `%0.10f` of 1/n. */
const probability = (n: number) => (1 / n).toFixed(10);

export function kubeProxyTable(options: KubeProxyTableOptions): KubeProxyTable {
  const cycle = options.endpointCycle ?? [2, 3, 3];
  const nodePortEvery = options.nodePortEvery ?? 10;
  const chains: string[] = [
    ":PREROUTING ACCEPT [0:0]",
    ":INPUT ACCEPT [0:0]",
    ":OUTPUT ACCEPT [0:0]",
    ":POSTROUTING ACCEPT [0:0]",
    ":DOCKER - [0:0]",
    ":CNI-HOSTPORT-MASQ - [0:0]",
    ":KUBE-SERVICES - [0:0]",
    ":KUBE-NODEPORTS - [0:0]",
    ":KUBE-POSTROUTING - [0:0]",
    ":KUBE-MARK-MASQ - [0:0]",
    ":KUBE-PROXY-CANARY - [0:0]",
  ];
  const rules: string[] = [
    `-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`,
    "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
    `-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`,
    "-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER",
    `-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING`,
    "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
    `-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ`,
    `-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE`,
    "-A DOCKER -i docker0 -j RETURN",
    `-A KUBE-MARK-MASQ -j MARK --or-mark ${masqueradeMark}`,
    `-A KUBE-POSTROUTING -m mark ! --mark ${masqueradeMark}/${masqueradeMark} -j RETURN`,
    `-A KUBE-POSTROUTING -j MARK --xor-mark ${masqueradeMark}`,
    `-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" ` +
    "-j MASQUERADE --random-fully",
  ];
  // kube-proxy writes each chain's rules together; KUBE-SERVICES and KUBE-NODEPORTS collect one
  // rule per service and are emitted after the per-service chains, as iptables-save orders them
  // by chain anyway.
  const serviceRules: string[] = [];
  const nodePortRules: string[] = [];
  let endpoints = 0;
  for (let i = 0; i < options.services; i++) {
    const udp = i % 20 === 19;
    const protocol = udp ? "udp" : "tcp";
    const port = udp ? 53 : [80, 443, 8080][i % 3];
    const targetPort = udp ? 5353 : [8080, 8443, 9090][i % 3];
    const portName = udp ? "dns" : ["http", "https", "metrics"][i % 3];
    const servicePort = `ns-${i % 97}/svc-${i}:${portName}`;
    const clusterIp = address(10, 96, i);
    const svcChain = `KUBE-SVC-${portProtoHash(servicePort + protocol)}`;
    const match = `-p ${protocol} -m comment --comment "${servicePort} cluster IP" ` +
      `-m ${protocol} --dport ${port}`;
    chains.push(`:${svcChain} - [0:0]`);
    serviceRules.push(`-A KUBE-SERVICES -d ${clusterIp}/32 ${match} -j ${svcChain}`);
    rules.push(`-A ${svcChain} ! -s ${clusterCidr} -d ${clusterIp}/32 ${match} -j KUBE-MARK-MASQ`);
    const count = cycle[i % cycle.length];
    const sepRules: string[] = [];
    for (let e = 0; e < count; e++) {
      const podIp = address(10, 244, endpoints++);
      const endpoint = `${podIp}:${targetPort}`;
      const sepChain = `KUBE-SEP-${portProtoHash(servicePort + protocol + endpoint)}`;
      chains.push(`:${sepChain} - [0:0]`);
      const balance = e < count - 1
        ? ` -m statistic --mode random --probability ${probability(count - e)}`
        : "";
      rules.push(
        `-A ${svcChain} -m comment --comment "${servicePort} -> ${endpoint}"${balance} ` +
          `-j ${sepChain}`,
      );
      sepRules.push(
        `-A ${sepChain} -s ${podIp}/32 -m comment --comment "${servicePort}" -j KUBE-MARK-MASQ`,
        `-A ${sepChain} -p ${protocol} -m comment --comment "${servicePort}" -m ${protocol} ` +
          `-j DNAT --to-destination ${endpoint}`,
      );
    }
    rules.push(...sepRules);
    if (i % nodePortEvery === nodePortEvery - 1) {
      const extChain = `KUBE-EXT-${portProtoHash(servicePort + protocol)}`;
      chains.push(`:${extChain} - [0:0]`);
      nodePortRules.push(
        `-A KUBE-NODEPORTS -p ${protocol} -m comment --comment "${servicePort}" ` +
          `-m ${protocol} --dport ${30000 + (i % 2768)} -j ${extChain}`,
      );
      rules.push(
        `-A ${extChain} -m comment --comment "masquerade traffic for ${servicePort} external ` +
          `destinations" -j KUBE-MARK-MASQ`,
        `-A ${extChain} -j ${svcChain}`,
      );
    }
  }
  serviceRules.push(
    `-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the ` +
      `last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS`,
  );
  const nat = [...rules, ...serviceRules, ...nodePortRules];
  // kubelet's KUBE-IPTABLES-HINT tells other components which backend it used; the canaries are
  // how kubelet and kube-proxy notice that their tables were flushed.
  const mangle = [
    "*mangle",
    ":PREROUTING ACCEPT [0:0]",
    ":INPUT ACCEPT [0:0]",
    ":FORWARD ACCEPT [0:0]",
    ":OUTPUT ACCEPT [0:0]",
    ":POSTROUTING ACCEPT [0:0]",
    ":KUBE-IPTABLES-HINT - [0:0]",
    ":KUBE-KUBELET-CANARY - [0:0]",
    ":KUBE-PROXY-CANARY - [0:0]",
    "COMMIT",
  ];
  const restoreInput = [...mangle, "*nat", ...chains, ...nat, "COMMIT", ""].join("\n");
  return {
    restoreInput,
    natRules: nat.length,
    natChains: chains.length,
    services: options.services,
    endpoints,
  };
}

/** `deno run bench/kube_proxy_table.ts [--services=5000]` prints the restore input. */
if (import.meta.main) {
  const services = Number(/^--services=(\d+)$/.exec(Deno.args[0] ?? "")?.[1] ?? 5000);
  const table = kubeProxyTable({ services });
  await ReadableStream.from([new TextEncoder().encode(table.restoreInput)])
    .pipeTo(Deno.stdout.writable);
  console.error(`${table.natRules} nat rules in ${table.natChains} chains`);
}
