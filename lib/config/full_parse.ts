/**
 * The full YAML parse (the `yaml` package, YAML 1.1) for what the fast path does not read. Rejects
 * what is no config at all: not YAML, several documents, too many or dangling aliases.
 *
 * @module
 */

// The package's ES module build (deno.json maps "yaml" to it) with the types of the same locked
// version: loaded as npm/CommonJS it costs ~7 MiB more RSS (docs/benchmarks.md).
// @ts-types="npm:yaml"
import { type Alias, LineCounter, type Node, parseDocument, visit } from "yaml";
import type { ConfigProblem } from "../base/problems.ts";
import { err, ok, type Result } from "../base/result.ts";
import type { SourceLocation } from "../base/source.ts";

/** Anchors are legal YAML; hundreds of aliases are an expansion bomb. */
const maxAliasCount = 100;

/** The parsed document, typed loosely so that this API names none of the package's types. */
export interface ParsedYaml {
  /** The package's `Document`: its `contents` and, to resolve aliases, itself. */
  readonly document: { readonly contents: unknown };
  /** Where a node (the package's `Node`) starts. */
  readonly locate: (node: unknown) => SourceLocation;
}

/**
 * Parses `text` (the file `file`) as one YAML 1.1 document.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseYamlDocument } from "./full_parse.ts";
 *
 * const parsed = parseYamlDocument("f", "a: &x 1\nb: *x\n");
 * assert.ok(parsed.ok);
 * const { document, locate } = parsed.value;
 * assert.deepEqual(locate(document.contents), { file: "f", line: 1, column: 1 });
 * const dangling = parseYamlDocument("f", "a: *missing\n");
 * assert.ok(!dangling.ok);
 * assert.equal(dangling.error[0].message, "alias *missing refers to no anchor defined before it");
 * ```
 */
export function parseYamlDocument(file: string, text: string): Result<ParsedYaml, ConfigProblem[]> {
  const lineCounter = new LineCounter();
  // Duplicate keys are reported by the validator, which names the key (also case variants).
  const options = { version: "1.1", lineCounter, uniqueKeys: false, prettyErrors: false } as const;
  const document = parseDocument(text, options);
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
        : `not valid YAML or JSON: ${error.message.split("\n")[0]}`,
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
  return ok({ document, locate: locate as (node: unknown) => SourceLocation });
}
