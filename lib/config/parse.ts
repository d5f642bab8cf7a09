/**
 * One config file: its schema and validation. Reads YAML (or JSON, a subset)
 * the way Kubernetes does (YAML 1.1: `yes`/`on` are booleans) and matches keys
 * case-insensitively as Go's JSON decoding does. Every problem carries the
 * file, line and key; unknown keys are errors because a typo that silently
 * drops all CIDRs masquerades a whole cluster.
 *
 * @module
 */

// The package's ES module build (deno.json maps "yaml" to it) with the types of the same locked
// version: loaded as npm/CommonJS it costs ~7 MiB more RSS (docs/benchmarks.md).
// @ts-types="npm:yaml"
import {
  type Alias,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  parseDocument,
  visit,
} from "yaml";
import type { IpAddress } from "../net/address.ts";
import { type Cidr, parseCidr } from "../net/cidr.ts";
import { type FastScalar, parseFastYaml } from "./fast_parse.ts";
import type { ConfigProblem } from "./problems.ts";
import { parseGoDuration, resyncBoundsMilliseconds, resyncBoundsText } from "./duration.ts";
import { parseInterfaceName, parseOutputAddress } from "./output.ts";
import { quoteInput } from "../base/quote.ts";
import { err, ok, type Result } from "../base/result.ts";
import { type LocatedSetting, parseSetting, type SettingKey, settingKeyNames } from "./settings.ts";
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

/**
 * The config directory as read: absent, or its config files in sorted order, with the visible
 * entries ignored for their name (`ignored`, sorted; absent when there is none).
 */
export type ConfigDirContents =
  | { readonly kind: "missing" }
  | {
    readonly kind: "files";
    readonly files: readonly ConfigFileBytes[];
    readonly ignored?: readonly string[];
  };

/**
 * Whether a directory entry is ignored for its name: not hidden (kubelet's `..data` and
 * timestamped directories are), and not starting with {@link configFilePrefix}. Such an entry
 * is worth a warning: v1's ConfigMap key `config` mounted as is, or a typo, is never read.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ignoredForItsName } from "./parse.ts";
 *
 * assert.equal(ignoredForItsName("config"), true);
 * assert.equal(ignoredForItsName("ip-masq-agent"), false);
 * assert.equal(ignoredForItsName("..data"), false);
 * ```
 */
export function ignoredForItsName(name: string): boolean {
  return !name.startsWith(".") && !name.startsWith(configFilePrefix);
}

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
  /** `nonMasqueradeCIDRs`, in file order; empty when the key is absent. */
  readonly nonMasqueradeCidrs: readonly Located<Cidr>[];
  /**
   * Where the file names `nonMasqueradeCIDRs` with a list (even `[]`); undefined when the key is
   * absent or null. Only a file that names it replaces the defaults (as in v1).
   */
  readonly namesNonMasqueradeCidrs?: SourceLocation;
  /** `masqueradeCIDRs`: destinations masqueraded inside a non-masquerade range; file order. */
  readonly masqueradeCidrs: readonly Located<Cidr>[];
  /** `nonMasqueradeSrcCIDRs`: sources never masqueraded; file order. */
  readonly nonMasqueradeSrcCidrs: readonly Located<Cidr>[];
  /** `masqLinkLocal`. */
  readonly masqLinkLocal?: Located<boolean>;
  /** `masqLinkLocalIPv6`. */
  readonly masqLinkLocalIPv6?: Located<boolean>;
  /** `cidrLimit`, or {@link defaultCidrLimit}; already checked against the list. */
  readonly cidrLimit: number;
  /** In milliseconds. */
  readonly resyncInterval?: Located<number>;
  /** The settings that are also flags (`masqChain`, `toPorts`, ...), in file order. */
  readonly settings?: readonly LocatedSetting[];
  /** `outputAddress`: the IPv4 address the last rules SNAT to instead of MASQUERADE. */
  readonly outputAddress?: Located<IpAddress>;
  /** `outputAddressIPv6`: the same for IPv6. */
  readonly outputAddressIPv6?: Located<IpAddress>;
  /** `outputInterface`: masquerade only what leaves by this interface (`eth+`: a wildcard). */
  readonly outputInterface?: Located<string>;
}

/** What a file's validity depends on beyond its own text. */
export interface ParseOptions {
  /** IPv6 CIDRs are an error without `--enable-ipv6`: they would silently do nothing. */
  readonly enableIpv6: boolean;
}

/** The most CIDRs a file may list when it sets no `cidrLimit` (upstream's default). */
export const defaultCidrLimit = 64;
/** ConfigMaps cannot exceed 1 MiB, so a larger file is not a config. */
export const maxConfigFileBytes = 1024 * 1024;
const maxCidrLimit = 100_000;
const { min: minResyncMilliseconds, max: maxResyncMilliseconds } = resyncBoundsMilliseconds;
/** Anchors are legal YAML; hundreds of aliases are an expansion bomb. */
const maxAliasCount = 100;

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
 * Decodes, parses and validates one file. Pure: the caller did the reading.
 * Either the file's config, or every problem found in it, each with its line
 * and key.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseConfigFile } from "./parse.ts";
 *
 * const text = "nonMasqueradeCIDRs:\n  - 10.0.0.0/8\nmasqLinkLocal: true\n";
 * const bytes = new TextEncoder().encode(text);
 * const parsed = parseConfigFile("/etc/config/ip-masq-agent", bytes, { enableIpv6: false });
 * assert.ok(parsed.ok);
 * assert.equal(parsed.value.nonMasqueradeCidrs[0].value.text, "10.0.0.0/8");
 * assert.deepEqual(parsed.value.nonMasqueradeCidrs[0].at, {
 *   file: "/etc/config/ip-masq-agent",
 *   line: 2,
 *   column: 5,
 * });
 *
 * const typo = parseConfigFile("f", new TextEncoder().encode("nonMasqueradeCIDR: []\n"), {
 *   enableIpv6: false,
 * });
 * assert.ok(!typo.ok);
 * assert.match(typo.error[0].message, /unknown key; did you mean "nonMasqueradeCIDRs"\?/);
 * ```
 */
export function parseConfigFile(
  file: string,
  bytes: Uint8Array,
  options: ParseOptions,
): Result<FileConfig, ConfigProblem[]> {
  const decoded = decodeText(file, bytes);
  if (!decoded.ok) return err([decoded.error]);
  const text = decoded.value;
  const first = firstParses.get(file);
  if (first !== null) firstParses.set(file, null);
  if (first && first.text === text && first.enableIpv6 === options.enableIpv6) return first.result;
  const result = checkControlCharacters(file, text) ?? parseConfigText(file, text, options);
  if (first === undefined) firstParses.set(file, { text, enableIpv6: options.enableIpv6, result });
  return result;
}

/**
 * Each file's first parse, kept for its next parse only (null once that took it). Start-up
 * loads the config twice within milliseconds: main.ts reads the settings keys
 * (`flagsWithSettings`), then the agent's first reconcile loads it again; at 100,000 CIDRs each
 * load cost ~1 s of CPU under `--lite-mode`, at 10,000 ~90 ms (docs/benchmarks.md, issue 18).
 * Parsing is pure, so the same file, text and options give the same result, and a running agent
 * keeps nothing here (a path and a null per file). The string comparison is native: well under
 * a millisecond for a 1 MiB file.
 */
const firstParses = new Map<
  string,
  { text: string; enableIpv6: boolean; result: Result<FileConfig, ConfigProblem[]> } | null
>();

function checkControlCharacters(
  file: string,
  text: string,
): Result<FileConfig, ConfigProblem[]> | undefined {
  // YAML forbids most control characters anyway; saying so plainly beats a parser message.
  // deno-lint-ignore no-control-regex -- finding control characters is the point
  const control = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.exec(text);
  if (!control) return undefined;
  const line = text.slice(0, control.index).split("\n").length;
  return err([{ at: { file, line }, message: "file contains binary control characters" }]);
}

function decodeText(file: string, bytes: Uint8Array): Result<string, ConfigProblem> {
  const at = { file };
  if (bytes.length > maxConfigFileBytes) {
    return err({
      at,
      message: `file is larger than ${maxConfigFileBytes} bytes (the ConfigMap limit)`,
    });
  }
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    return err({ at, message: "file starts with a UTF-8 byte order mark: save it as plain UTF-8" });
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return err({ at, message: "file is not valid UTF-8 text" });
  }
  return ok(text);
}

/**
 * {@link parseConfigFile} for text that is already decoded. The shapes real
 * ConfigMaps use are read by a fast path (config_fast.ts); anything else by
 * the full YAML parse ({@link parseConfigTextFully}). Both feed the same
 * validation, so the results are identical (tests/config/fast_parse_test.ts).
 */
export function parseConfigText(
  file: string,
  text: string,
  options: ParseOptions,
): Result<FileConfig, ConfigProblem[]> {
  const fast = parseFastYaml(text);
  if (fast === undefined) return parseConfigTextFully(file, text, options);
  const locate = (node: Node | null | undefined): SourceLocation => {
    const at = node as unknown as FastScalar | null | undefined;
    return at ? { file, line: at.line, column: at.column } : { file };
  };
  return new FileValidator(file, options, locate, fast as unknown as ValidatedDocument).validate();
}

/** {@link parseConfigText} through the full YAML parse, whatever the text's shape. */
export function parseConfigTextFully(
  file: string,
  text: string,
  options: ParseOptions,
): Result<FileConfig, ConfigProblem[]> {
  const lineCounter = new LineCounter();
  const document = parseDocument(text, {
    version: "1.1",
    lineCounter,
    // Duplicate keys are reported by the validator, which names the key (also case variants).
    uniqueKeys: false,
    prettyErrors: false,
  });
  const locateOffset = (offset: number | undefined): SourceLocation => {
    if (offset === undefined) return { file };
    const { line, col } = lineCounter.linePos(offset);
    return { file, line, column: col };
  };
  const locate = (node: Node | null | undefined) => locateOffset(node?.range?.[0]);
  // The parser reports a stack overflow at whatever depth the stack ran out, which differs from
  // call to call; one stable message keeps "log an unchanged error once" working.
  if (document.errors.some((error) => error.code === "RESOURCE_EXHAUSTION")) {
    return err([{ at: { file }, message: "not valid YAML or JSON: nested too deeply to parse" }]);
  }
  if (document.errors.length > 0) {
    return err(document.errors.map((error) => ({
      // With prettyErrors off the parser leaves linePos unset; the offset is always there.
      at: locateOffset(error.pos[0]),
      message: error.code === "MULTIPLE_DOCS"
        ? "not valid YAML or JSON: multiple documents (separated by ---); a config file holds one"
        : `not valid YAML or JSON: ${firstLine(error.message)}`,
    })));
  }
  const aliases: Alias[] = [];
  visit(document, { Alias: (_, alias) => void aliases.push(alias) });
  if (aliases.length > maxAliasCount) {
    return err([{
      at: locate(aliases[maxAliasCount]),
      message: `too many YAML aliases (${aliases.length}, at most ${maxAliasCount})`,
    }]);
  }
  // The parser accepts an alias to an anchor that does not exist; read as null it would drop the
  // key ("nonMasqueradeCIDRs: *typo" would masquerade everything).
  const dangling = aliases.filter((alias) => alias.resolve(document) === undefined);
  if (dangling.length > 0) {
    return err(dangling.map((alias) => ({
      at: locate(alias),
      message: `alias *${alias.source} refers to no anchor defined before it`,
    })));
  }
  return new FileValidator(file, options, locate, document).validate();
}

type YamlDocument = ReturnType<typeof parseDocument>;
/** What the validator reads of a document: the full parse's, or the fast path's look-alike. */
type ValidatedDocument = Pick<YamlDocument, "contents">;

class FileValidator {
  readonly #problems: ConfigProblem[] = [];
  readonly #seenKeys = new Map<KnownKey, SourceLocation>();
  readonly #cidrs: Record<CidrListKey, Located<Cidr>[]> = {
    nonMasqueradeCIDRs: [],
    masqueradeCIDRs: [],
    nonMasqueradeSrcCIDRs: [],
  };
  #namesNonMasqueradeCidrs?: SourceLocation;
  #masqLinkLocal?: Located<boolean>;
  #masqLinkLocalIPv6?: Located<boolean>;
  #cidrLimit = defaultCidrLimit;
  #cidrLimitAt?: SourceLocation;
  #resyncInterval?: Located<number>;
  readonly #settings: LocatedSetting[] = [];
  #outputAddress?: Located<IpAddress>;
  #outputAddressIPv6?: Located<IpAddress>;
  #outputInterface?: Located<string>;

  constructor(
    readonly file: string,
    readonly options: ParseOptions,
    readonly locate: (node: Node | null | undefined) => SourceLocation,
    readonly document: ValidatedDocument,
  ) {}

  validate(): Result<FileConfig, ConfigProblem[]> {
    const root = this.resolve(this.document.contents);
    // An empty file, or one holding only `null`, is a present file with no keys, as in Go.
    if (root === null || (isScalar(root) && root.value === null)) return this.result();
    if (!isMap(root)) {
      this.problem(
        root,
        undefined,
        "the top level must be a mapping of keys such as nonMasqueradeCIDRs",
      );
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
      const key = keyText === undefined ? undefined : matchKey(keyText);
      if (key === undefined) {
        this.unknownKey(keyNode, keyText);
        continue;
      }
      const earlier = this.#seenKeys.get(key);
      if (earlier) {
        this.problem(
          keyNode,
          key,
          `key appears twice (also at line ${earlier.line}); keys match case-insensitively`,
        );
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
        this.#masqLinkLocal = this.boolean(key, value, keyNode);
        return;
      case "masqLinkLocalIPv6":
        this.#masqLinkLocalIPv6 = this.boolean(key, value, keyNode);
        return;
      case "cidrLimit":
        return this.validateCidrLimit(value, keyNode);
      case "resyncInterval":
        return this.validateResyncInterval(value, keyNode);
      case "outputAddress":
      case "outputAddressIPv6":
        return this.validateOutputAddress(key, value, keyNode);
      case "outputInterface":
        return this.validateOutputInterface(value, keyNode);
      default:
        return this.validateSetting(key, value, keyNode);
    }
  }

  private validateSetting(key: SettingKey, value: Node | null, keyNode: Node | null): void {
    if (!isScalar(value)) {
      this.problem(value ?? keyNode, key, `must be a single value, got ${describe(value)}`);
      return;
    }
    const parsed = parseSetting(key, value.value);
    if (!parsed.ok) {
      this.problem(value, key, parsed.error);
      return;
    }
    this.#settings.push({ key, ...parsed.value, at: this.locate(value) });
  }

  private validateOutputAddress(
    key: "outputAddress" | "outputAddressIPv6",
    value: Node | null,
    keyNode: Node | null,
  ): void {
    if (!isScalar(value) || typeof value.value !== "string") {
      this.problem(value ?? keyNode, key, `must be an address string, got ${describe(value)}`);
      return;
    }
    const family = key === "outputAddress" ? "ipv4" : "ipv6";
    const parsed = parseOutputAddress(value.value, family);
    if (!parsed.ok) {
      this.problem(value, key, parsed.error);
      return;
    }
    if (family === "ipv6" && !this.options.enableIpv6) {
      this.problem(
        value,
        key,
        `${parsed.value.text} is for IPv6 but IPv6 is not enabled: add the --enable-ipv6 flag or enableIPv6: true`,
      );
      return;
    }
    const located = { value: parsed.value, at: this.locate(value) };
    if (family === "ipv4") this.#outputAddress = located;
    else this.#outputAddressIPv6 = located;
  }

  private validateOutputInterface(value: Node | null, keyNode: Node | null): void {
    const key = "outputInterface";
    if (!isScalar(value) || typeof value.value !== "string") {
      this.problem(
        value ?? keyNode,
        key,
        `must be an interface name string such as "eth0", got ${describe(value)}`,
      );
      return;
    }
    const parsed = parseInterfaceName(value.value);
    if (!parsed.ok) {
      this.problem(value, key, parsed.error);
      return;
    }
    this.#outputInterface = { value: parsed.value, at: this.locate(value) };
  }

  private validateCidrList(key: CidrListKey, value: Node | null, keyNode: Node | null): void {
    if (!isSeq(value)) {
      this.problem(value ?? keyNode, key, `must be a list of CIDR strings, got ${describe(value)}`);
      return;
    }
    if (key === "nonMasqueradeCIDRs") this.#namesNonMasqueradeCidrs = this.locate(keyNode);
    value.items.forEach((rawItem, index) => {
      const itemKey = `${key}[${index}]`;
      const item = this.resolve(rawItem as Node | null);
      if (item === null || (isScalar(item) && (item.value === null || item.value === ""))) {
        this.problem(item ?? value, itemKey, "empty list item: remove it or write a CIDR");
        return;
      }
      if (!isScalar(item) || typeof item.value !== "string") {
        this.problem(item, itemKey, `must be a CIDR string, got ${describe(item)}`);
        return;
      }
      const parsed = parseCidr(item.value);
      if (!parsed.ok) {
        this.problem(item, itemKey, `invalid CIDR ${quoteInput(item.value)}: ${parsed.error}`);
        return;
      }
      if (parsed.value.family === "ipv6" && !this.options.enableIpv6) {
        this.problem(
          item,
          itemKey,
          `${parsed.value.text} is an IPv6 CIDR but IPv6 is not enabled: add the --enable-ipv6 flag or enableIPv6: true`,
        );
        return;
      }
      this.#cidrs[key].push({ value: parsed.value, at: this.locate(item) });
    });
  }

  private boolean(key: KnownKey, value: Node | null, keyNode: Node | null) {
    if (isScalar(value) && typeof value.value === "boolean") {
      return { value: value.value, at: this.locate(value) };
    }
    this.problem(value ?? keyNode, key, `must be true or false, got ${describe(value)}`);
    return undefined;
  }

  private validateCidrLimit(value: Node | null, keyNode: Node | null): void {
    const key = "cidrLimit";
    if (!isScalar(value) || typeof value.value !== "number" || !Number.isInteger(value.value)) {
      this.problem(value ?? keyNode, key, `must be a whole number, got ${describe(value)}`);
      return;
    }
    if (value.value < 1 || value.value > maxCidrLimit) {
      this.problem(value, key, `must be between 1 and ${maxCidrLimit}, got ${value.value}`);
      return;
    }
    this.#cidrLimit = value.value;
    this.#cidrLimitAt = this.locate(value);
  }

  private validateResyncInterval(value: Node | null, keyNode: Node | null): void {
    const key = "resyncInterval";
    if (!isScalar(value) || typeof value.value !== "string") {
      this.problem(
        value ?? keyNode,
        key,
        `must be a Go duration string such as "60s", got ${describe(value)}`,
      );
      return;
    }
    const parsed = parseGoDuration(value.value);
    if (!parsed.ok) {
      this.problem(value, key, parsed.error);
      return;
    }
    if (parsed.value < minResyncMilliseconds || parsed.value > maxResyncMilliseconds) {
      this.problem(value, key, `must be ${resyncBoundsText}, got ${quoteInput(value.value)}`);
      return;
    }
    this.#resyncInterval = { value: parsed.value, at: this.locate(value) };
  }

  private checkCidrLimit(): void {
    const listed = cidrListKeys.filter((key) => this.#cidrs[key].length > 0);
    const total = listed.reduce((sum, key) => sum + this.#cidrs[key].length, 0);
    if (total <= this.#cidrLimit) return;
    const limitSource = this.#cidrLimitAt
      ? `cidrLimit is ${this.#cidrLimit} (line ${this.#cidrLimitAt.line})`
      : `the default cidrLimit is ${this.#cidrLimit}; raise it with a cidrLimit key`;
    // One list keeps upstream's wording; several name what was added up.
    const key = listed[0];
    const counted = listed.length === 1
      ? `has ${total} CIDRs`
      : `has ${total} CIDRs in ${listed.map((k) => `${k} (${this.#cidrs[k].length})`).join(", ")}`;
    this.#problems.push({
      at: this.#seenKeys.get(key) ?? { file: this.file },
      key,
      message: `${counted} but ${limitSource}`,
    });
  }

  private unknownKey(keyNode: Node | null, keyText: string | undefined): void {
    if (keyText === undefined) {
      this.problem(keyNode, undefined, "keys must be plain strings");
      return;
    }
    const suggestion = closestKey(keyText);
    const hint = suggestion ? `; did you mean "${suggestion}"?` : "";
    this.problem(
      keyNode,
      keyText,
      `unknown key${hint} (known keys: ${knownKeys.join(", ")})`,
    );
  }

  private resolve(node: Node | null | undefined): Node | null {
    if (node === null || node === undefined) return null;
    if (!isAlias(node)) return node;
    return (node.resolve(this.document as YamlDocument) as Node | undefined) ?? null;
  }

  private problem(node: Node | null | undefined, key: string | undefined, message: string): void {
    this.#problems.push({ at: this.locate(node), key, message });
  }

  private result(): Result<FileConfig, ConfigProblem[]> {
    if (this.#problems.length > 0) return err(this.#problems);
    return ok({
      file: this.file,
      nonMasqueradeCidrs: this.#cidrs.nonMasqueradeCIDRs,
      ...(this.#namesNonMasqueradeCidrs
        ? { namesNonMasqueradeCidrs: this.#namesNonMasqueradeCidrs }
        : {}),
      masqueradeCidrs: this.#cidrs.masqueradeCIDRs,
      nonMasqueradeSrcCidrs: this.#cidrs.nonMasqueradeSrcCIDRs,
      masqLinkLocal: this.#masqLinkLocal,
      masqLinkLocalIPv6: this.#masqLinkLocalIPv6,
      cidrLimit: this.#cidrLimit,
      resyncInterval: this.#resyncInterval,
      settings: this.#settings,
      // Only when set, so a file without them parses to the very same value as before.
      ...(this.#outputAddress ? { outputAddress: this.#outputAddress } : {}),
      ...(this.#outputAddressIPv6 ? { outputAddressIPv6: this.#outputAddressIPv6 } : {}),
      ...(this.#outputInterface ? { outputInterface: this.#outputInterface } : {}),
    });
  }
}

/** Go's encoding/json tries an exact match first, then a case-insensitive one. */
function matchKey(text: string): KnownKey | undefined {
  return knownKeys.find((key) => key === text) ??
    knownKeys.find((key) => key.toLowerCase() === text.toLowerCase());
}

function closestKey(text: string): KnownKey | undefined {
  let best: KnownKey | undefined;
  let bestDistance = Infinity;
  for (const key of knownKeys) {
    const distance = editDistance(key.toLowerCase(), text.toLowerCase());
    if (distance < bestDistance) [best, bestDistance] = [key, distance];
  }
  // Beyond a third of the word the "suggestion" is noise.
  return bestDistance <= Math.max(2, Math.ceil(text.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j] + 1,
        current[j - 1] + 1,
        previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length];
}

function describe(node: Node | null): string {
  if (node === null) return "nothing";
  if (isMap(node)) return "a mapping";
  if (isSeq(node)) return "a list";
  if (isScalar(node)) {
    if (node.value === null) return "null";
    if (typeof node.value === "string") return `the string ${quoteInput(node.value)}`;
    return `${typeof node.value} ${String(node.value)}`;
  }
  return "an unsupported value";
}

function firstLine(message: string): string {
  return message.split("\n")[0];
}
