/**
 * The rule-shaping settings given as flags or config keys (`masqChain`, `toPorts`, ...), so a
 * DaemonSet keeps them in its ConfigMap, where the agent and `--check` read the same value. A key
 * overrides the flag's default; a flag given, or the same key in another file, must agree with it.
 * (`resyncInterval` is not one of these: as upstream, its key wins over `--resync-interval`.)
 *
 * @module
 */

import type { ConfigProblem } from "../base/problems.ts";
import { type AgentFlags, type CommandLine, type FlagDef, flagTable } from "./flags.ts";
import { quoteInput } from "../base/quote.ts";
import { err, ok, type Result } from "../base/result.ts";
import { formatLocation, type SourceLocation } from "../base/source.ts";

export type { CommandLine };

/** Each setting's config key and the {@link AgentFlags} field it sets. */
export const settingKeys = {
  masqChain: "masqChain",
  nomasqAllReservedRanges: "nomasqAllReservedRanges",
  enableIPv6: "enableIpv6",
  randomFully: "randomFully",
  toPorts: "toPorts",
  iptablesMode: "iptablesMode",
  dataplane: "dataplane",
  postroutingJump: "postroutingJump",
  kubeProxyMasqueradeBit: "kubeProxyMasqueradeBit",
} as const satisfies Record<string, keyof AgentFlags>;

/** A config key that is also a flag: `masqChain`, `toPorts`, ... */
export type SettingKey = keyof typeof settingKeys;

/** The config keys of {@link settingKeys}, in table order. */
export const settingKeyNames: readonly SettingKey[] = Object.keys(settingKeys) as SettingKey[];

/** One setting as a file gives it: the parsed value, the text for messages, and where. */
export interface LocatedSetting {
  /** The config key, spelled as {@link settingKeys} spells it. */
  readonly key: SettingKey;
  /** The value, parsed as the flag parses it (a PortRange list for `toPorts`, ...). */
  readonly value: unknown;
  /** The value in command-line form, as messages and comparisons show it. */
  readonly text: string;
  /** Where the value was written. */
  readonly at: SourceLocation;
}

function flagOf(key: SettingKey): FlagDef {
  // Every field in settingKeys has a row.
  return flagTable.find((row) => row.field === settingKeys[key])!;
}

/** The flag's value in command-line form, as `--name=` would spell it. */
function show(key: SettingKey, value: unknown): string {
  return String(flagOf(key).show(value));
}

/**
 * Parses a setting's YAML value as its flag parses its text: booleans must be booleans, the rest
 * strings (a whole number is read as its digits, so `toPorts: 8080` works).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseSetting } from "./keys.ts";
 *
 * const value = { value: [{ first: 8080, last: 8080 }], text: "8080" };
 * assert.deepEqual(parseSetting("toPorts", 8080), { ok: true, value });
 * assert.equal(parseSetting("dataplane", "ebpf").ok, false);
 * assert.equal(parseSetting("enableIPv6", "true").ok, false); // a YAML boolean, not a string
 * ```
 */
export function parseSetting(
  key: SettingKey,
  raw: unknown,
): Result<{ value: unknown; text: string }, string> {
  const def = flagOf(key);
  const bool = def.kind === "bool";
  const wholeNumber = Number.isInteger(raw) && Number(raw) >= 0;
  if (bool ? typeof raw !== "boolean" : typeof raw !== "string" && !wholeNumber) {
    const got = typeof raw === "string" ? quoteInput(raw) : `${typeof raw} ${String(raw)}`;
    return err(`must be ${bool ? "true or false" : "a string"}, got ${got}`);
  }
  const input = bool ? raw as boolean : String(raw);
  const parsed = def.parse(input);
  if (!parsed.ok) return err(`invalid value ${quoteInput(String(input))}: ${parsed.error}`);
  return ok({ value: parsed.value, text: show(key, parsed.value) });
}

/**
 * The flags with the files' settings applied, or every conflict: a key given twice with different
 * values, or a key that disagrees with a flag given on the command line.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultFlags, parseFlags } from "./flags.ts";
 * import { resolveSettings } from "./keys.ts";
 *
 * const at = { file: "/etc/config/ip-masq-agent", line: 3 };
 * const settings = [{ key: "masqChain" as const, value: "MY-MASQ", text: "MY-MASQ", at }];
 * const resolved = resolveSettings({ flags: defaultFlags, given: new Set() }, [{ settings }]);
 * assert.ok(resolved.ok && resolved.value.masqChain === "MY-MASQ");
 *
 * const given = parseFlags(["--masq-chain=OTHER"]); // a flag given must agree with the key
 * assert.ok(given.ok);
 * const conflict = resolveSettings(given.value, [{ settings }]);
 * assert.ok(!conflict.ok && conflict.error[0].message.includes("--masq-chain=OTHER on the"));
 * ```
 */
export function resolveSettings(
  commandLine: CommandLine,
  files: readonly { readonly settings?: readonly LocatedSetting[] }[],
): Result<AgentFlags, ConfigProblem[]> {
  const problems: ConfigProblem[] = [];
  const conflict = ({ at, key, text }: LocatedSetting, afterValue: string) =>
    problems.push({ at, key, message: `is ${quoteInput(text)} ${afterValue}` });
  const chosen = new Map<SettingKey, LocatedSetting>();
  for (const setting of files.flatMap((file) => file.settings ?? [])) {
    const earlier = chosen.get(setting.key);
    if (earlier === undefined) chosen.set(setting.key, setting);
    else if (earlier.text !== setting.text) {
      const where = `${quoteInput(earlier.text)} in ${formatLocation(earlier.at)}`;
      conflict(setting, `here but ${where}: a setting must have one value; remove one of them`);
    }
  }
  const flags: AgentFlags = { ...commandLine.flags };
  for (const [key, setting] of chosen) {
    const field = settingKeys[key];
    const flagText = show(key, commandLine.flags[field]);
    if (commandLine.given.has(field) && flagText !== setting.text) {
      conflict(
        setting,
        `but --${flagOf(key).name}=${flagText} on the command line says otherwise: set it in ` +
          `one place (a key overrides a flag's default, and a flag given with a key must agree ` +
          `with it)`,
      );
    }
    (flags as unknown as Record<string, unknown>)[field] = setting.value;
  }
  return problems.length > 0 ? err(problems) : ok(flags);
}

/**
 * The settings whose value differs between `a` and `b`: what a running agent cannot change in
 * place (it was composed from them at start).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultFlags } from "./flags.ts";
 * import { changedSettings } from "./keys.ts";
 *
 * const changed = { ...defaultFlags, masqChain: "MY-MASQ", verbosity: 2 };
 * assert.deepEqual(changedSettings(defaultFlags, changed), ["masqChain"]); // not verbosity
 * ```
 */
export function changedSettings(a: AgentFlags, b: AgentFlags): SettingKey[] {
  return settingKeyNames.filter((key) =>
    show(key, a[settingKeys[key]]) !== show(key, b[settingKeys[key]])
  );
}
