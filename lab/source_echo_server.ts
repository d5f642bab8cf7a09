/**
 * The two ends of the end-to-end packet tests, each run inside a network
 * namespace with `deno run --allow-net`:
 *
 * - `serve PORT`: listens on every address (IPv4 and IPv6) and answers each
 *   connection with one JSON line saying which source address and port it saw,
 *   then closes. It prints `listening` on stdout once it accepts connections.
 * - `connect TIMEOUT_MS HOST:PORT...`: connects to each target in turn (IPv6 in
 *   brackets, a zone after `%` allowed) and prints one JSON line per target:
 *   `{"target", "answer"}` or `{"target", "error"}`. Connecting and reading
 *   the answer are bounded by TIMEOUT_MS together.
 *
 * @module
 */

export interface SourceAnswer {
  /** The source address the server saw, IPv4-mapped IPv6 written as plain IPv4. */
  readonly source: string;
  readonly sourcePort: number;
  /** The address the client connected to. */
  readonly destination: string;
}

export interface ConnectResult {
  readonly target: string;
  readonly answer?: SourceAnswer;
  readonly error?: string;
}

/** `::ffff:198.51.100.1` is how a dual-stack socket shows an IPv4 peer. */
function unmap(address: string): string {
  return address.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, "$1");
}

async function serve(port: number): Promise<void> {
  // Dual-stack: bindv6only is 0 in a fresh namespace, so IPv4 peers arrive here too.
  const listener = Deno.listen({ hostname: "::", port });
  console.log("listening");
  const encoder = new TextEncoder();
  for await (const conn of listener) {
    (async () => {
      try {
        const remote = conn.remoteAddr as Deno.NetAddr;
        const local = conn.localAddr as Deno.NetAddr;
        const answer: SourceAnswer = {
          source: unmap(remote.hostname),
          sourcePort: remote.port,
          destination: unmap(local.hostname),
        };
        await conn.write(encoder.encode(`${JSON.stringify(answer)}\n`));
      } catch {
        // The client gave up; nothing to answer.
      } finally {
        try {
          conn.close();
        } catch {
          // Already closed.
        }
      }
    })();
  }
}

function parseTarget(target: string): { hostname: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(target);
  if (!match) throw new Error(`bad target ${target} (want HOST:PORT or [V6]:PORT)`);
  return { hostname: match[1] ?? match[2], port: Number(match[3]) };
}

async function connectOnce(target: string, timeoutMs: number): Promise<ConnectResult> {
  let conn: Deno.TcpConn | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  const exchange = (async () => {
    conn = await Deno.connect({ ...parseTarget(target), transport: "tcp" });
    const text = await new Response(conn.readable).text();
    conn = undefined; // The readable stream closed it.
    return JSON.parse(text) as SourceAnswer;
  })();
  try {
    return { target, answer: await Promise.race([exchange, timeout]) };
  } catch (error) {
    exchange.catch(() => {});
    return { target, error: error instanceof Error ? error.message : String(error) };
  } finally {
    clearTimeout(timer);
    try {
      conn?.close();
    } catch {
      // Already closed.
    }
  }
}

async function connectAll(timeoutMs: number, targets: readonly string[]): Promise<void> {
  for (const target of targets) {
    console.log(JSON.stringify(await connectOnce(target, timeoutMs)));
  }
}

if (import.meta.main) {
  const [mode, ...rest] = Deno.args;
  if (mode === "serve") {
    await serve(Number(rest[0]));
  } else if (mode === "connect") {
    await connectAll(Number(rest[0]), rest.slice(1));
    // A connect still pending after its timeout must not keep the process alive.
    Deno.exit(0);
  } else {
    console.error("usage: source_echo_server.ts serve PORT | connect TIMEOUT_MS HOST:PORT...");
    Deno.exit(2);
  }
}
