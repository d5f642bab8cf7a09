/**
 * One config file: its schema and validation. YAML 1.1 as Kubernetes reads it (`yes`/`on` are
 * booleans), keys matched case-insensitively as Go's JSON decoding does. Every problem carries the
 * file, line and key; unknown keys are errors: a typo that drops all CIDRs masquerades a cluster.
 *
 * @module
 */

// Types only: the `yaml` package itself is loaded on demand (full_parse.ts).
// @ts-types="npm:yaml"
import type { Alias, Document, Node, Scalar, YAMLMap, YAMLSeq } from "yaml";
import type { IpAddress } from "../net/address.ts";
import { type Cidr, parseCidr } from "../net/cidr.ts";
import { type FastDocument, type FastScalar, parseFastYaml } from "./fast_parse.ts";
import type { ConfigProblem } from "../base/problems.ts";
import {
  parseGoDuration,
  resyncIntervalBoundsMs,
  resyncIntervalBoundsText,
} from "../settings/duration.ts";
import { parseInterfaceName, parseOutputAddress } from "../settings/output.ts";
import { quoteInput } from "../base/quote.ts";
import { err, ok, type Result } from "../base/result.ts";
import { type LocatedSetting, parseSetting, settingKeyNames } from "../settings/keys.ts";
import type { AgentFlags } from "../settings/flags.ts";
import type { Located, SourceLocation } from "../base/source.ts";

/** Which entries of the config directory are config files: those whose name starts with this. */
export const configFilePrefix = "ip-masq";

/** One config file's path and raw bytes, as read from the config directory. */
export interface ConfigFileBytes {
  /** The directory joined with the entry name (not resolved: messages name what the user sees). */
  readonly path: string;
  /** At most {@link maxConfigFileBytes}. */
  readonly bytes: Uint8Array;
}

/** The config directory as read: absent, or its config files and ignored entries, sorted. */
export type ConfigDirContents =
  | { readonly kind: "missing" }
  | {
    readonly kind: "files";
    readonly files: readonly ConfigFileBytes[];
    readonly ignored?: readonly string[];
  };

/** The warning for an entry ignored for its name; `dir` is the config directory. */
export function ignoredEntryMessage(dir: string, name: string): string {
  return `${dir.replace(/\/+$/, "")}/${name} is ignored: only entries whose name starts with ` +
    `"${configFilePrefix}" are config files (a ConfigMap key such as "config" must be renamed, ` +
    `e.g. to "ip-masq-agent")`;
}

/** What one file says. Absent keys stay undefined so merge can tell "unset" from "false". */
export interface FileConfig {
  /** The file's path. */
  readonly file: string;
  /** `nonMasqueradeCIDRs`, [] if absent; merged: the union, or the defaults if no file names it. */
  readonly nonMasqueradeCidrs: readonly Located<Cidr>[];
  /** Where the file names `nonMasqueradeCIDRs` (even `[]`); only then are the defaults replaced. */
  readonly namesNonMasqueradeCidrs?: SourceLocation;
  /** `masqueradeCIDRs`: masqueraded inside a shorter non-masquerade range; merged: the union. */
  readonly masqueradeCidrs: readonly Located<Cidr>[];
  /** `nonMasqueradeSrcCIDRs`: sources never masqueraded whatever the destination; merged: union. */
  readonly nonMasqueradeSrcCidrs: readonly Located<Cidr>[];
  /** `masqLinkLocal` (merged: true when any file says so). */
  readonly masqLinkLocal?: Located<boolean>;
  /** `masqLinkLocalIPv6` (merged: true when any file says so). */
  readonly masqLinkLocalIPv6?: Located<boolean>;
  /** `cidrLimit`, or {@link defaultCidrLimit}; already checked against the list. */
  readonly cidrLimit: number;
  /** `resyncInterval`, in milliseconds; undefined means "use --resync-interval". */
  readonly resyncInterval?: Located<number>;
  /** The settings that are also flags (`masqChain`, `toPorts`, ...), in file order. */
  readonly settings?: readonly LocatedSetting[];
  /** `outputAddress`: IPv4 traffic is SNATed to it instead of masqueraded; absent: MASQUERADE. */
  readonly outputAddress?: Located<IpAddress>;
  /** `outputAddressIPv6`: the same for IPv6. */
  readonly outputAddressIPv6?: Located<IpAddress>;
  /** `outputInterface`: only what leaves by it (`eth+`: a wildcard) is masqueraded or SNATed. */
  readonly outputInterface?: Located<string>;
}

/** Beyond its text, a file's validity depends on `--enable-ipv6`: without it IPv6 does nothing. */
export type ParseOptions = Readonly<Pick<AgentFlags, "enableIpv6">>;

/** The most CIDRs a file may list when it sets no `cidrLimit` (upstream's default). */
export const defaultCidrLimit = 64;
/** ConfigMaps cannot exceed 1 MiB, so a larger file is not a config. */
export const maxConfigFileBytes = 1024 * 1024;
const maxCidrLimit = 100_000;

const knownKeys = [
  "nonMasqueradeCIDRs",
  "masqLinkLocal",
  "masqLinkLocalIPv6",
  "cidrLimit",
  "resyncInterval",
  "masqueradeCIDRs",
  "nonMasqueradeSrcCIDRs",
  ...settingKeyNames,
  "outputAddress",
  "outputAddressIPv6",
  "outputInterface",
] as const;
type KnownKey = typeof knownKeys[number];
/** The keys holding CIDR lists; together they count toward `cidrLimit`. */
const cidrListKeys = ["nonMasqueradeCIDRs", "masqueradeCIDRs", "nonMasqueradeSrcCIDRs"] as const;
type CidrListKey = typeof cidrListKeys[number];

/**
 * Decodes, parses and validates one file: its config, or every problem found in it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseConfigFile } from "./parse.ts";
 * const parse = (text: string) =>
 *   parseConfigFile("f", new TextEncoder().encode(text), { enableIpv6: false });
 *
 * const parsed = parse("nonMasqueradeCIDRs:\n  - 10.0.0.0/8\nmasqLinkLocal: true\n");
 * assert.ok(parsed.ok);
 * const [{ value, at }] = parsed.value.nonMasqueradeCidrs;
 * assert.deepEqual([value.text, at.line, at.column], ["10.0.0.0/8", 2, 5]);
 * const typo = parse("nonMasqueradeCIDR: []\n");
 * assert.ok(!typo.ok);
 * assert.match(typo.error[0].message, /unknown key; did you mean "nonMasqueradeCIDRs"\?/);
 * ```
 */
export function parseConfigFile(
  file: string,
  bytes: Uint8Array,
  options: ParseOptions,
): Result<FileConfig, ConfigProblem[]> {
  const text = decodeText(file, bytes);
  return text.ok ? parseConfigText(file, text.value, options) : text;
}

/** The file's text, or why it is no config's text (found without a YAML parser). */
function decodeText(file: string, bytes: Uint8Array): Result<string, ConfigProblem[]> {
  const invalid = (message: string) => err([{ at: { file }, message }]);
  if (bytes.length > maxConfigFileBytes) {
    return invalid(`file is larger than ${maxConfigFileBytes} bytes (the ConfigMap limit)`);
  }
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    return invalid("file starts with a UTF-8 byte order mark: save it as plain UTF-8");
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return invalid("file is not valid UTF-8 text");
  }
  // YAML forbids most control characters anyway; saying so plainly beats a parser message.
  // deno-lint-ignore no-control-regex -- finding control characters is the point
  const control = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.exec(text);
  if (!control) return ok(text);
  const line = text.slice(0, control.index).split("\n").length;
  return err([{ at: { file, line }, message: "file contains binary control characters" }]);
}

/** {@link parseConfigFile} for text: the fast path when it reads it, else the full YAML parse. */
export function parseConfigText(
  file: string,
  text: string,
  options: ParseOptions,
): Result<FileConfig, ConfigProblem[]> {
  // The fast reading prepareParse kept for this very text is taken, once.
  const kept = prepared.get(file);
  const fast = kept?.text === text && kept.fast ? kept.fast : parseFastYaml(text);
  if (kept?.text === text) kept.fast = null;
  if (fast === undefined) return parseConfigTextFully(file, text, options);
  const locate = (node: Node | null | undefined): SourceLocation => {
    const at = node as unknown as FastScalar | null | undefined;
    return at ? { file, line: at.line, column: at.column } : { file };
  };
  return new FileValidator(file, options, locate, fast).validate();
}

/** {@link parseConfigText} through the full YAML parse, whatever the text's shape. */
export function parseConfigTextFully(
  file: string,
  text: string,
  options: ParseOptions,
): Result<FileConfig, ConfigProblem[]> {
  if (!loadedFullYaml) {
    throw new Error(
      "the full YAML parse is not loaded: read the config directory through prepareParse",
    );
  }
  const parsed = loadedFullYaml.parseYamlDocument(file, text);
  if (!parsed.ok) return parsed;
  const { document, locate } = parsed.value;
  return new FileValidator(file, options, locate, document).validate();
}

let loadedFullYaml: typeof import("./full_parse.ts") | undefined;
const loadFullYaml = async () => void (loadedFullYaml ??= await import("./full_parse.ts"));

// Loaded now unless main.ts asked for on demand before this module was evaluated
// (yaml_on_demand.ts): tests, lab and bench keep the synchronous API whatever the text.
if (!(globalThis as Record<symbol, unknown>)[Symbol.for("ip-masq-agent.yaml-on-demand")]) {
  await loadFullYaml();
}

/** Each file's text as {@link prepareParse} last read it, with its fast reading until taken. */
const prepared = new Map<string, { text: string; fast: FastDocument | null }>();

/**
 * Loads the full YAML parse when a file of `contents` needs it; the agent reads the directory only
 * through this (main.ts). The parse that follows takes the fast reading kept here.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseConfigFile, prepareParse } from "./parse.ts";
 *
 * const bytes = new TextEncoder().encode("masqLinkLocal: &x true\nmasqLinkLocalIPv6: *x\n");
 * await prepareParse({ kind: "files", files: [{ path: "/etc/config/ip-masq-agent", bytes }] });
 * const parsed = parseConfigFile("/etc/config/ip-masq-agent", bytes, { enableIpv6: true });
 * assert.ok(parsed.ok);
 * assert.equal(parsed.value.masqLinkLocalIPv6?.value, true);
 * ```
 */
export async function prepareParse(contents: ConfigDirContents): Promise<void> {
  if (loadedFullYaml !== undefined || contents.kind === "missing") return;
  for (const { path, bytes } of contents.files) {
    const text = decodeText(path, bytes);
    // Not a config's text (no parser needed to say so), or unchanged since read.
    if (!text.ok || prepared.get(path)?.text === text.value) continue;
    const fast = parseFastYaml(text.value) ?? null;
    prepared.set(path, { text: text.value, fast });
    if (fast === null) return await loadFullYaml();
  }
}

// The `yaml` package's node identity (nodes/identity.js), which the fast path's nodes carry too:
// the validator tells nodes apart without loading the package.
const nodeOf = <T>(kind: string) => {
  const [type, mark] = [Symbol.for("yaml.node.type"), Symbol.for(`yaml.${kind}`)];
  return (node: unknown): node is T => (node as Record<symbol, unknown> | null)?.[type] === mark;
};
const isAlias = nodeOf<Alias>("alias");
const isMap = nodeOf<YAMLMap>("map");
const isScalar = nodeOf<Scalar>("scalar");
const isSeq = nodeOf<YAMLSeq>("seq");

const isString = (raw: unknown): raw is string => typeof raw === "string";
const isBoolean = (raw: unknown): raw is boolean => typeof raw === "boolean";
const isInteger = (raw: unknown): raw is number => Number.isInteger(raw);
const isAnything = (_: unknown): _ is unknown => true;
const ipv6NotEnabled = "but IPv6 is not enabled: add the --enable-ipv6 flag or enableIPv6: true";

/** The keys a file sets one value for, kept until the result is built. */
type ValueKey =
  | "masqLinkLocal"
  | "masqLinkLocalIPv6"
  | "resyncInterval"
  | "outputAddress"
  | "outputAddressIPv6"
  | "outputInterface"
  | "namesNonMasqueradeCidrs";

class FileValidator {
  readonly #problems: ConfigProblem[] = [];
  readonly #seenKeys = new Map<KnownKey, SourceLocation>();
  readonly #cidrs: Record<CidrListKey, Located<Cidr>[]> = {
    nonMasqueradeCIDRs: [],
    masqueradeCIDRs: [],
    nonMasqueradeSrcCIDRs: [],
  };
  #cidrLimit?: Located<number>;
  readonly #settings: LocatedSetting[] = [];
  // Bounded to the keys set from the file: `result()` spreads what it does not name, so a computed
  // field (`cidrLimit`, `settings`, the CIDR lists) must never be one of them.
  readonly #values: { -readonly [K in ValueKey]?: FileConfig[K] } = {};

  constructor(
    readonly file: string,
    readonly options: ParseOptions,
    readonly locate: (node: Node | null | undefined) => SourceLocation,
    // The full parse's document, or the fast path's look-alike: only its contents are read.
    readonly document: { readonly contents: unknown },
  ) {}

  validate(): Result<FileConfig, ConfigProblem[]> {
    const root = this.resolve(this.document.contents as Node | null);
    // An empty file, or one holding only `null`, is a present file with no keys, as in Go.
    if (root === null || (isScalar(root) && root.value === null)) return this.result();
    if (!isMap(root)) {
      const message = "the top level must be a mapping of keys such as nonMasqueradeCIDRs";
      this.problem(root, undefined, message);
      return this.result();
    }
    for (const pair of root.items) {
      const keyNode = this.resolve(pair.key as Node | null);
      // A YAML 1.1 merge key (<<) parses to a symbol; show it as written.
      const keyText = !isScalar(keyNode)
        ? undefined
        : typeof keyNode.value === "symbol"
        ? keyNode.value.description
        : String(keyNode.value);
      if (keyText === undefined) {
        this.problem(keyNode, undefined, "keys must be plain strings");
        continue;
      }
      // Go's encoding/json tries an exact match first, then a case-insensitive one.
      const key = knownKeys.find((known) => known === keyText) ??
        knownKeys.find((known) => known.toLowerCase() === keyText.toLowerCase());
      if (key === undefined) {
        const suggestion = closestKey(keyText);
        const hint = suggestion ? `; did you mean "${suggestion}"?` : "";
        this.problem(keyNode, keyText, `unknown key${hint} (known keys: ${knownKeys.join(", ")})`);
        continue;
      }
      const earlier = this.#seenKeys.get(key);
      if (earlier) {
        const also = `also at line ${earlier.line}`;
        this.problem(keyNode, key, `key appears twice (${also}); keys match case-insensitively`);
        continue;
      }
      this.#seenKeys.set(key, this.locate(keyNode));
      this.validateKey(key, this.resolve(pair.value as Node | null), keyNode);
    }
    this.checkCidrLimit();
    return this.result();
  }

  private validateKey(key: KnownKey, value: Node | null, keyNode: Node | null): void {
    // Go's JSON decoding leaves a field untouched for null, so `masqLinkLocal:` with no value
    // means "not set" upstream; configs that work there must work here.
    if (value === null || (isScalar(value) && value.value === null)) return;
    switch (key) {
      case "nonMasqueradeCIDRs":
      case "masqueradeCIDRs":
      case "nonMasqueradeSrcCIDRs":
        return this.validateCidrList(key, value, keyNode);
      case "masqLinkLocal":
      case "masqLinkLocalIPv6":
        this.#values[key] = this.scalar(key, value, "true or false", isBoolean, ok);
        return;
      case "cidrLimit":
        this.#cidrLimit = this.scalar(key, value, "a whole number", isInteger, (limit) => {
          if (limit >= 1 && limit <= maxCidrLimit) return ok(limit);
          return err(`must be between 1 and ${maxCidrLimit}, got ${limit}`);
        });
        return;
      case "resyncInterval": {
        const wanted = 'a Go duration string such as "60s"';
        this.#values[key] = this.scalar(key, value, wanted, isString, (text) => {
          const parsed = parseGoDuration(text);
          const { min, max } = resyncIntervalBoundsMs;
          if (!parsed.ok || (parsed.value >= min && parsed.value <= max)) return parsed;
          return err(`must be ${resyncIntervalBoundsText}, got ${quoteInput(text)}`);
        });
        return;
      }
      case "outputAddress":
      case "outputAddressIPv6": {
        const family = key === "outputAddress" ? "ipv4" : "ipv6";
        this.#values[key] = this.scalar(key, value, "an address string", isString, (text) => {
          const parsed = parseOutputAddress(text, family);
          if (!parsed.ok || family === "ipv4" || this.options.enableIpv6) return parsed;
          return err(`${parsed.value.text} is for IPv6 ${ipv6NotEnabled}`);
        });
        return;
      }
      case "outputInterface": {
        const wanted = 'an interface name string such as "eth0"';
        this.#values[key] = this.scalar(key, value, wanted, isString, parseInterfaceName);
        return;
      }
      default: {
        const parse = (raw: unknown) => parseSetting(key, raw);
        const setting = this.scalar(key, value, "a single value", isAnything, parse);
        if (setting) this.#settings.push({ key, ...setting.value, at: setting.at });
      }
    }
  }

  private validateCidrList(key: CidrListKey, value: Node, keyNode: Node | null): void {
    if (!isSeq(value)) {
      this.problem(value, key, `must be a list of CIDR strings, got ${describe(value)}`);
      return;
    }
    if (key === "nonMasqueradeCIDRs") this.#values.namesNonMasqueradeCidrs = this.locate(keyNode);
    value.items.forEach((rawItem, index) => {
      const itemKey = `${key}[${index}]`;
      const item = this.resolve(rawItem as Node | null);
      if (item === null || (isScalar(item) && (item.value === null || item.value === ""))) {
        this.problem(item ?? value, itemKey, "empty list item: remove it or write a CIDR");
        return;
      }
      const cidr = this.scalar(itemKey, item, "a CIDR string", isString, (text) => {
        const parsed = parseCidr(text);
        if (!parsed.ok) return err(`invalid CIDR ${quoteInput(text)}: ${parsed.error}`);
        if (parsed.value.family === "ipv4" || this.options.enableIpv6) return parsed;
        return err(`${parsed.value.text} is an IPv6 CIDR ${ipv6NotEnabled}`);
      });
      if (cidr) this.#cidrs[key].push(cidr);
    });
  }

  /** A scalar `accepts`, as `parse` reads it; or undefined, with the problem recorded. */
  private scalar<V, T>(
    key: string,
    node: Node,
    wanted: string,
    accepts: (raw: unknown) => raw is V,
    parse: (raw: V) => Result<T, string>,
  ): Located<T> | undefined {
    const parsed = isScalar(node) && accepts(node.value)
      ? parse(node.value)
      : err(`must be ${wanted}, got ${describe(node)}`);
    if (parsed.ok) return { value: parsed.value, at: this.locate(node) };
    this.problem(node, key, parsed.error);
    return undefined;
  }

  private checkCidrLimit(): void {
    const limit = this.#cidrLimit?.value ?? defaultCidrLimit;
    const listed = cidrListKeys.filter((key) => this.#cidrs[key].length > 0);
    const total = listed.reduce((sum, key) => sum + this.#cidrs[key].length, 0);
    if (total <= limit) return;
    const limitSource = this.#cidrLimit
      ? `cidrLimit is ${limit} (line ${this.#cidrLimit.at.line})`
      : `the default cidrLimit is ${limit}; raise it with a cidrLimit key`;
    // One list keeps upstream's wording; several name what was added up.
    const counts = listed.map((key) => `${key} (${this.#cidrs[key].length})`).join(", ");
    const counted = listed.length === 1 ? `has ${total} CIDRs` : `has ${total} CIDRs in ${counts}`;
    const [key] = listed;
    const at = this.#seenKeys.get(key) ?? { file: this.file };
    this.#problems.push({ at, key, message: `${counted} but ${limitSource}` });
  }

  private resolve(node: Node | null | undefined): Node | null {
    if (!isAlias(node)) return node ?? null;
    return (node.resolve(this.document as Document.Parsed) as Node | undefined) ?? null;
  }

  private problem(node: Node | null | undefined, key: string | undefined, message: string): void {
    this.#problems.push({ at: this.locate(node), key, message });
  }

  private result(): Result<FileConfig, ConfigProblem[]> {
    if (this.#problems.length > 0) return err(this.#problems);
    // The other keys (outputAddress, ...) only when set: a file without them parses as before.
    const { masqLinkLocal, masqLinkLocalIPv6, resyncInterval, ...whenSet } = this.#values;
    return ok({
      file: this.file,
      nonMasqueradeCidrs: this.#cidrs.nonMasqueradeCIDRs,
      masqueradeCidrs: this.#cidrs.masqueradeCIDRs,
      nonMasqueradeSrcCidrs: this.#cidrs.nonMasqueradeSrcCIDRs,
      masqLinkLocal,
      masqLinkLocalIPv6,
      cidrLimit: this.#cidrLimit?.value ?? defaultCidrLimit,
      resyncInterval,
      settings: this.#settings,
      ...whenSet,
    });
  }
}

function closestKey(text: string): KnownKey | undefined {
  const distance = (key: string) => editDistance(key.toLowerCase(), text.toLowerCase());
  const best = knownKeys.reduce((a, b) => (distance(b) < distance(a) ? b : a));
  // Beyond a third of the word the "suggestion" is noise.
  return distance(best) <= Math.max(2, Math.ceil(text.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1);
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, substitution);
    }
    previous = current;
  }
  return previous[b.length];
}

function describe(node: Node): string {
  if (isMap(node)) return "a mapping";
  if (isSeq(node)) return "a list";
  if (!isScalar(node)) return "an unsupported value";
  if (node.value === null) return "null";
  if (typeof node.value === "string") return `the string ${quoteInput(node.value)}`;
  return `${typeof node.value} ${String(node.value)}`;
}
