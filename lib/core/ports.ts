/**
 * The `--to-ports` value: source port ranges MASQUERADE may pick from, as
 * upstream v1 accepts them (`1024-29999,32768-65535`, single ports allowed).
 *
 * @module
 */

export interface PortRange {
  readonly first: number;
  readonly last: number;
}

export type ParsePortRangesResult =
  | { ok: true; ranges: PortRange[] }
  | { ok: false; reason: string };

const maxPort = 65535;

/** Parses the flag value, keeping the given order; empty means "no port restriction". */
export function parsePortRanges(spec: string): ParsePortRangesResult {
  if (spec === "") return { ok: true, ranges: [] };
  const ranges: (PortRange & { text: string })[] = [];
  for (const item of spec.split(",")) {
    const match = /^([0-9]+)(?:-([0-9]+))?$/.exec(item);
    if (match === null) {
      return {
        ok: false,
        reason: `${JSON.stringify(item)} is not a port or port range ` +
          `(want a comma-separated list of N or N-M)`,
      };
    }
    const bounds: number[] = [];
    for (const digits of [match[1], match[2]]) {
      if (digits === undefined) continue;
      // iptables parses ports with base auto-detection, so "010" would silently mean 8.
      if (digits.length > 1 && digits[0] === "0") {
        return { ok: false, reason: `port ${JSON.stringify(digits)} must not have a leading zero` };
      }
      const port = Number(digits);
      if (port < 1 || port > maxPort) {
        return { ok: false, reason: `port ${digits} is out of range 1-${maxPort}` };
      }
      bounds.push(port);
    }
    const [first, last = first] = bounds;
    if (first > last) {
      return { ok: false, reason: `port range ${item} has its start above its end` };
    }
    ranges.push({ first, last, text: item });
  }
  const sorted = [...ranges].sort((a, b) => a.first - b.first);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].first <= sorted[i - 1].last) {
      return { ok: false, reason: `ports ${sorted[i - 1].text} and ${sorted[i].text} overlap` };
    }
  }
  return { ok: true, ranges: ranges.map(({ first, last }) => ({ first, last })) };
}

export function portRangeSize(range: PortRange): number {
  return range.last - range.first + 1;
}

/** iptables prints a one-port range as a bare number. */
export function formatPortRange(range: PortRange): string {
  return range.first === range.last ? `${range.first}` : `${range.first}-${range.last}`;
}
