/**
 * The DaemonSet's container as an OCI bundle for Debian's `runc`, generated
 * from examples/ip-masq-agent.yaml rather than restated: the container's
 * `args` after the image's entry point, its readiness probe's command, its
 * `securityContext` (read-only root, uid 0, only the capabilities it adds, in
 * every set, no new privileges) and its volume mounts (the projected
 * ConfigMap volume, the hostPath xtables lock), in the node's network
 * namespace as `hostNetwork: true` asks.
 *
 * What kubelet and containerd would add that the agent never looks at is left
 * out on purpose: there is no `rlimits` key (this machine refuses setting
 * them; runc's default spec and podman fail here for that reason), no
 * seccomp profile (the manifest sets none, and kubelet's default is
 * Unconfined), no resource limits (the lab runs `deno run`, whose footprint
 * is not the compiled binary's; the bench measures that).
 *
 * @module
 */

// @ts-types="npm:yaml"
import { parse } from "yaml";
import type { Rootfs } from "./rootfs.ts";
import { within } from "./wait.ts";

const repoRoot = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
export const manifestPath = `${repoRoot}/examples/ip-masq-agent.yaml`;
const decoder = new TextDecoder();

/** distroless' image PATH (what containerd puts in the environment from the image config). */
const imagePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

type Json = Record<string, unknown>;

function obj(value: unknown, where: string): Json {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${where}: expected a mapping, got ${JSON.stringify(value)}`);
  }
  return value as Json;
}

function strings(value: unknown, where: string): string[] {
  if (!Array.isArray(value) || value.some((v) => typeof v !== "string")) {
    throw new Error(`${where}: expected a list of strings, got ${JSON.stringify(value)}`);
  }
  return value as string[];
}

export interface VolumeMount {
  readonly name: string;
  readonly mountPath: string;
  readonly readOnly: boolean;
  /** The volume it mounts: a hostPath (with its type), or one the lab must supply. */
  readonly volume:
    | { readonly kind: "hostPath"; readonly path: string; readonly type?: string }
    | { readonly kind: "projected"; readonly defaultMode?: number }
    | { readonly kind: "other" };
}

/** What the manifest says about the container, as the runtime would read it. */
export interface ManifestContainer {
  readonly name: string;
  readonly args: readonly string[];
  readonly probeCommand: readonly string[];
  readonly hostNetwork: boolean;
  readonly readOnlyRootFilesystem: boolean;
  readonly noNewPrivileges: boolean;
  /** `CAP_`-prefixed, as the kernel and OCI name them. */
  readonly capabilities: readonly string[];
  readonly uid: number;
  readonly gid: number;
  readonly mounts: readonly VolumeMount[];
}

/** Reads the DaemonSet's one container (YAML 1.1, as Kubernetes reads it). */
export async function readManifest(path = manifestPath): Promise<ManifestContainer> {
  const daemonSet = obj(parse(await Deno.readTextFile(path), { version: "1.1" }), path);
  if (daemonSet.kind !== "DaemonSet") throw new Error(`${path}: not a DaemonSet`);
  const podSpec = obj(obj(obj(daemonSet.spec, "spec").template, "template").spec, "pod spec");
  const containers = podSpec.containers;
  if (!Array.isArray(containers) || containers.length !== 1) {
    throw new Error(`${path}: expected exactly one container`);
  }
  const container = obj(containers[0], "container");
  const security = obj(container.securityContext, "securityContext");
  if (security.privileged === true) throw new Error("a privileged container is not modelled");
  const capabilities = obj(security.capabilities, "capabilities");
  if (!strings(capabilities.drop, "capabilities.drop").includes("ALL")) {
    // Without "drop: ALL" the runtime's default set applies, which this bundle does not model.
    throw new Error("securityContext.capabilities must drop ALL");
  }
  const podSecurity = podSpec.securityContext ? obj(podSpec.securityContext, "pod security") : {};
  // The Dockerfile has no USER: without runAsUser the image's root runs the agent.
  const uid = Number(security.runAsUser ?? podSecurity.runAsUser ?? 0);
  const gid = Number(security.runAsGroup ?? podSecurity.runAsGroup ?? 0);

  const volumes = new Map<string, Json>();
  for (const [i, volume] of (Array.isArray(podSpec.volumes) ? podSpec.volumes : []).entries()) {
    const v = obj(volume, `volumes[${i}]`);
    volumes.set(String(v.name), v);
  }
  const mounts: VolumeMount[] = [];
  const rawMounts = Array.isArray(container.volumeMounts) ? container.volumeMounts : [];
  for (const [i, raw] of rawMounts.entries()) {
    const mount = obj(raw, `volumeMounts[${i}]`);
    const name = String(mount.name);
    const volume = volumes.get(name);
    if (!volume) throw new Error(`volumeMounts[${i}]: no volume named ${name}`);
    let kind: VolumeMount["volume"];
    if (volume.hostPath) {
      const hostPath = obj(volume.hostPath, `${name}.hostPath`);
      kind = {
        kind: "hostPath",
        path: String(hostPath.path),
        type: hostPath.type === undefined ? undefined : String(hostPath.type),
      };
    } else if (volume.projected) {
      const mode = obj(volume.projected, `${name}.projected`).defaultMode;
      kind = { kind: "projected", defaultMode: typeof mode === "number" ? mode : undefined };
    } else kind = { kind: "other" };
    mounts.push({
      name,
      mountPath: String(mount.mountPath),
      readOnly: mount.readOnly === true,
      volume: kind,
    });
  }

  return {
    name: String(container.name),
    args: strings(container.args ?? [], "args"),
    probeCommand: strings(
      obj(obj(container.readinessProbe, "readinessProbe").exec, "readinessProbe.exec").command,
      "readinessProbe.exec.command",
    ),
    hostNetwork: podSpec.hostNetwork === true,
    readOnlyRootFilesystem: security.readOnlyRootFilesystem === true,
    // Kubernetes sets no_new_privs exactly when allowPrivilegeEscalation is false.
    noNewPrivileges: security.allowPrivilegeEscalation === false,
    capabilities: strings(capabilities.add ?? [], "capabilities.add").map((c) => `CAP_${c}`),
    uid,
    gid,
    mounts,
  };
}

export interface LabMount {
  readonly source: string;
  readonly destination: string;
  readonly readOnly: boolean;
}

export interface BundleOptions {
  readonly container: ManifestContainer;
  readonly rootfs: Rootfs;
  /** The node's network namespace, e.g. /run/netns/<name> (hostNetwork: true). */
  readonly netnsPath: string;
  /** Host directories for the volumes the lab supplies (the projected ConfigMaps), by name. */
  readonly volumeSources: Readonly<Record<string, string>>;
  /** hostPath volumes redirected to another host path, by volume name (default: none). */
  readonly hostPathOverrides?: Readonly<Record<string, string>>;
  /** The lab's own bind mounts (repository, DENO_DIR, accounting), mounted last. */
  readonly labMounts: readonly LabMount[];
  /** `NAME=value` entries added to the image's environment. */
  readonly env: readonly string[];
}

function bind(source: string, destination: string, readOnly: boolean): Json {
  return {
    destination,
    type: "bind",
    source,
    options: ["rbind", "rprivate", ...(readOnly ? ["ro"] : [])],
  };
}

/** Creates what a hostPath volume's type asks the kubelet to create. */
async function prepareHostPath(path: string, type: string | undefined): Promise<void> {
  if (type === "FileOrCreate") {
    const file = await Deno.open(path, { create: true, append: true });
    file.close();
  } else if (type === "DirectoryOrCreate") {
    await Deno.mkdir(path, { recursive: true });
  } else {
    await Deno.stat(path);
  }
}

/** The OCI runtime config of the container (config.json), creating hostPath sources as asked. */
export async function ociConfig(options: BundleOptions): Promise<Json> {
  const { container, rootfs } = options;
  if (!container.hostNetwork) throw new Error("the lab models hostNetwork: true only");
  const volumeMounts: Json[] = [];
  for (const mount of container.mounts) {
    const volume = mount.volume;
    if (volume.kind === "hostPath") {
      const source = options.hostPathOverrides?.[mount.name] ?? volume.path;
      await prepareHostPath(source, volume.type);
      volumeMounts.push(bind(source, mount.mountPath, mount.readOnly));
    } else {
      const source = options.volumeSources[mount.name];
      if (!source) throw new Error(`no host directory given for volume ${mount.name}`);
      // Kubernetes mounts projected (ConfigMap, Secret) volumes read-only whatever the mount says.
      volumeMounts.push(
        bind(source, mount.mountPath, mount.readOnly || volume.kind === "projected"),
      );
    }
  }
  const capabilities = [...container.capabilities];
  return {
    ociVersion: "1.0.2",
    process: {
      terminal: false,
      user: { uid: container.uid, gid: container.gid },
      args: [rootfs.entrypoint, ...container.args],
      env: [imagePath, ...options.env],
      cwd: "/",
      capabilities: {
        bounding: capabilities,
        effective: capabilities,
        inheritable: capabilities,
        permitted: capabilities,
        ambient: capabilities,
      },
      noNewPrivileges: container.noNewPrivileges,
    },
    root: { path: rootfs.path, readonly: container.readOnlyRootFilesystem },
    mounts: [
      { destination: "/proc", type: "proc", source: "proc" },
      {
        destination: "/dev",
        type: "tmpfs",
        source: "tmpfs",
        options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
      },
      {
        destination: "/dev/pts",
        type: "devpts",
        source: "devpts",
        options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
      },
      {
        destination: "/dev/shm",
        type: "tmpfs",
        source: "shm",
        options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
      },
      {
        destination: "/dev/mqueue",
        type: "mqueue",
        source: "mqueue",
        options: ["nosuid", "noexec", "nodev"],
      },
      {
        destination: "/sys",
        type: "sysfs",
        source: "sysfs",
        options: ["nosuid", "noexec", "nodev", "ro"],
      },
      ...volumeMounts,
      ...options.labMounts.map((m) => bind(m.source, m.destination, m.readOnly)),
    ],
    linux: {
      // hostNetwork: the node's namespace, joined by path. The host's UTS namespace too, as
      // Kubernetes shares it with hostNetwork pods; pid, ipc and mount are the container's own.
      namespaces: [
        { type: "pid" },
        { type: "ipc" },
        { type: "mount" },
        { type: "network", path: options.netnsPath },
      ],
      resources: { devices: [{ allow: false, access: "rwm" }] },
      maskedPaths: [
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
      ],
      readonlyPaths: ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Running the bundle with runc.

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function hasRunc(): boolean {
  try {
    return new Deno.Command("runc", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

/** Undefined when runc can run bundles here; otherwise why not. */
export const runcSkipReason: string | undefined = hasRunc()
  ? undefined
  : "runc is not installed (apt-get install -y runc); this test needs a real OCI runtime " +
    "and has no unshare/chroot fallback";

async function runc(stateRoot: string, args: readonly string[]): Promise<RunResult> {
  const output = await new Deno.Command("runc", {
    args: ["--root", stateRoot, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/**
 * One container, run in the foreground by `runc run` (so its stdout and
 * stderr are the container process's), its own runc state directory, and
 * removed by `dispose` whatever state it is in.
 */
export class RuncContainer {
  readonly #child: Deno.ChildProcess;
  #stdout = "";
  #stderr = "";
  readonly #done: Promise<RunResult>;

  private constructor(
    readonly id: string,
    readonly stateRoot: string,
    child: Deno.ChildProcess,
  ) {
    this.#child = child;
    const collect = async (stream: ReadableStream<Uint8Array>, append: (text: string) => void) => {
      const streamDecoder = new TextDecoder();
      for await (const chunk of stream) append(streamDecoder.decode(chunk, { stream: true }));
    };
    const out = collect(child.stdout, (text) => this.#stdout += text);
    const err = collect(child.stderr, (text) => this.#stderr += text);
    this.#done = (async () => {
      const status = await child.status;
      await Promise.all([out, err]);
      return { code: status.code, stdout: this.#stdout, stderr: this.#stderr };
    })();
  }

  /** Writes `config` into `bundleDir` and starts the container. */
  static async run(bundleDir: string, config: Json, id: string): Promise<RuncContainer> {
    await Deno.writeTextFile(`${bundleDir}/config.json`, JSON.stringify(config, null, 2));
    const stateRoot = `${bundleDir}/runc-state`;
    await Deno.mkdir(stateRoot, { recursive: true });
    const child = new Deno.Command("runc", {
      args: ["--root", stateRoot, "run", "--bundle", bundleDir, id],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    return new RuncContainer(id, stateRoot, child);
  }

  get stdout(): string {
    return this.#stdout;
  }

  get stderr(): string {
    return this.#stderr;
  }

  /**
   * Resolves with the container's exit status and output once `runc run`
   * returns; fails, naming the bound, when it has not within `timeoutMs`.
   */
  wait(timeoutMs = 60_000): Promise<RunResult> {
    return within(`the container ${this.id} to exit`, this.#done, timeoutMs);
  }

  /** `runc exec`: a process in the same container (namespaces, capabilities, environment). */
  exec(argv: readonly string[]): Promise<RunResult> {
    return runc(this.stateRoot, ["exec", this.id, ...argv]);
  }

  /** `runc kill`: the signal goes to the container's PID 1. */
  async kill(signal: "TERM" | "HUP" | "KILL"): Promise<void> {
    const result = await runc(this.stateRoot, ["kill", this.id, signal]);
    if (result.code !== 0) throw new Error(`runc kill ${this.id} ${signal}: ${result.stderr}`);
  }

  /** Waits until the container's stderr matches, or throws with what it printed. */
  async waitForLog(pattern: RegExp, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(this.#stderr)) {
      const exited = await Promise.race([
        this.#done.then(() => true),
        new Promise<false>((resolve) => setTimeout(() => resolve(false), 25)),
      ]);
      if (exited && !pattern.test(this.#stderr)) {
        const { code } = await this.#done;
        throw new Error(
          `the container exited (${code}) before logging ${pattern}; stderr:\n${this.#stderr}`,
        );
      }
      if (Date.now() > deadline) {
        throw new Error(`timed out waiting for ${pattern}; stderr so far:\n${this.#stderr}`);
      }
    }
  }

  /** Kills and deletes the container (idempotent), then waits for `runc run` to return. */
  async dispose(): Promise<void> {
    await runc(this.stateRoot, ["kill", this.id, "KILL"]);
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // Already exited.
      }
    }, 10_000);
    await this.#done;
    clearTimeout(timer);
    await runc(this.stateRoot, ["delete", "--force", this.id]);
  }
}
