// The HTTP load of bench/network.ts's endpoint figure, run inside the namespace of the client it
// stands for (`ip netns exec NS node bench/http-load.ts ...`). For SECONDS, CONCURRENCY loops each
// open a new TCP connection per request, send `GET / HTTP/1.0`, read the answer to its end (the
// server closes) and time it from before the connect to the close. Requests still under way at
// the deadline are waited for and counted: the rate is answers over the time until the last one.
// A refused, reset or timed-out request, or an answer that is not a 200, is an error: counted,
// never timed, and the loop goes on with a new connection. HOST may be a comma-separated list:
// the requests then take turns over its addresses, as an endpoint's round robin does.
//
// usage: node bench/http-load.ts HOST[,HOST...] PORT SECONDS CONCURRENCY [TIMEOUT_MS]
// prints one JSON line: { requests, seconds, rps, p50_ms, p99_ms, max_ms, errors, error_kinds, bodies }
//   bodies: how many answers carried each body (the guests answer with their name)
import { createConnection } from "node:net";

const [host, port, seconds, concurrency, timeoutMs = "5000"] = process.argv.slice(2);
if (!host || !port || !seconds || !concurrency) {
  throw new Error("usage: http-load.ts HOST PORT SECONDS CONCURRENCY [TIMEOUT_MS]");
}

const latencies: number[] = [];
const errorKinds: Record<string, number> = {};
const bodies: Record<string, number> = {};
let errors = 0;
const targets = host.split(",");
let turn = 0;

function fail(kind: string): void {
  errors++;
  errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
}

/** One request on a new connection: its latency, its body, or an error, recorded above. */
function request(): Promise<void> {
  return new Promise((resolve) => {
    const started = performance.now();
    const chunks: Buffer[] = [];
    let settled = false;
    const settle = (kind?: string) => {
      if (settled) return;
      settled = true;
      if (kind) {
        fail(kind);
        socket.destroy();
        return resolve();
      }
      const text = Buffer.concat(chunks).toString("latin1");
      if (!/^HTTP\/1\.[01] 200 /.test(text)) {
        fail(`status ${text.split("\r\n")[0]?.slice(0, 40) || "(empty)"}`);
        return resolve();
      }
      latencies.push(performance.now() - started);
      const body = text.slice(text.indexOf("\r\n\r\n") + 4).trim();
      bodies[body] = (bodies[body] ?? 0) + 1;
      resolve();
    };
    const target = targets[turn++ % targets.length] as string;
    const socket = createConnection({ host: target, port: Number(port) }, () => {
      socket.write(`GET / HTTP/1.0\r\nHost: ${target}\r\n\r\n`);
    });
    socket.setTimeout(Number(timeoutMs), () => settle("timeout"));
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("error", (error: NodeJS.ErrnoException) => settle(error.code ?? error.message));
    socket.on("close", (hadError) => {
      if (!hadError) settle();
    });
  });
}

const started = performance.now();
const deadline = started + Number(seconds) * 1000;
async function loop(): Promise<void> {
  while (performance.now() < deadline) await request();
}
await Promise.all(Array.from({ length: Number(concurrency) }, loop));
const elapsed = (performance.now() - started) / 1000;

const sorted = latencies.sort((a, b) => a - b);
/** Nearest rank: the smallest latency at or above which `share` of the requests were answered. */
const percentile = (share: number) =>
  sorted.length === 0 ? null : (sorted[Math.max(0, Math.ceil(share * sorted.length) - 1)] as number);
console.log(
  JSON.stringify({
    requests: sorted.length,
    seconds: elapsed,
    rps: sorted.length / elapsed,
    p50_ms: percentile(0.5),
    p99_ms: percentile(0.99),
    max_ms: sorted.at(-1) ?? null,
    errors,
    error_kinds: errorKinds,
    bodies,
  }),
);
