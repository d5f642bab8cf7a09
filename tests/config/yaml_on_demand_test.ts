/**
 * The agent's entry point loads the `yaml` package only when a config file needs the full
 * parse (issue 18): in a fresh process that imports yaml_on_demand.ts first, as main.ts does,
 * the fast path parses without it, a file outside the fast path's subset loads it in
 * `prepareParse`, and the result is the one the eager parse gives.
 *
 * @module
 */

import assert from "node:assert/strict";

const lib = new URL("../../lib/config/", import.meta.url).href;

/** Runs `body` in a fresh `deno` process after main.ts's first import; its stdout as JSON. */
async function inFreshProcess(body: string): Promise<unknown> {
  const script = `import "${lib}yaml_on_demand.ts";\n` +
    `const parse = await import("${lib}parse.ts");\n` +
    `const bytes = (text) => new TextEncoder().encode(text);\n${body}`;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, stderr);
  return JSON.parse(new TextDecoder().decode(output.stdout));
}

Deno.test("yaml on demand: the fast path needs no yaml; a file outside it loads it first", async () => {
  const result = await inFreshProcess(`
    const fast = { kind: "files", files: [{ path: "/c/ip-masq-agent", bytes: bytes("nonMasqueradeCIDRs: [10.0.0.0/8]\\n") }] };
    await parse.prepareParse(fast);
    const fastParsed = parse.parseConfigFile("/c/ip-masq-agent", fast.files[0].bytes, { enableIpv6: false });
    let before = "loaded";
    try { parse.parseConfigTextFully("f", "a: 1\\n", { enableIpv6: false }); } catch (e) { before = e.message; }
    const anchors = bytes("masqLinkLocal: &x true\\nmasqLinkLocalIPv6: *x\\n");
    await parse.prepareParse({ kind: "files", files: [{ path: "/c/ip-masq-anchors", bytes: anchors }] });
    const full = parse.parseConfigFile("/c/ip-masq-anchors", anchors, { enableIpv6: true });
    console.log(JSON.stringify({
      fast: fastParsed.ok && fastParsed.value.nonMasqueradeCidrs.map((c) => c.value.text),
      before,
      full: full.ok && [full.value.masqLinkLocal.value, full.value.masqLinkLocalIPv6.value],
    }));
  `);
  assert.deepEqual(result, {
    fast: ["10.0.0.0/8"],
    before: "the full YAML parse is not loaded: read the config directory through prepareParse",
    full: [true, true],
  });
});
