// The endpoint figure of `npm run bench:network`: HTTP requests per second and p99 latency
// through an endpoint to two guests, against straight to one guest's address, in one run, with
// two controls of like against like (one guest each way, two guests each way) that isolate what
// the host's path costs from what a second guest adds. bench/http-load.ts makes the requests
// (a new connection each) from a namespace: an outside client on the WAN uses the endpoint, a
// client plugged into the network's bridge goes straight to the guests.
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { joinWan, plugGuest, sh } from "../test/network/namespaces.ts";
import { BRIDGE, type GuestAt, type GuestHost, PREFIX_LENGTH, wireGlobalvm } from "./network-wiring.ts";
import { fixed, median } from "./stats.ts";

/** Requests under way at once, each loop a new connection per request. */
const HTTP_CONCURRENCY = Number(process.env.BENCH_NETWORK_HTTP_CONCURRENCY ?? 8);
/** Seconds of the warm-up, one per path. */
const HTTP_WARM_SECONDS = 2;
const ENDPOINT_PORT = 30_000;
/** An endpoint of the same network whose only guest is the first, the one the direct client asks. */
const ONE_GUEST_PORT = 30_001;
/** The datacenter's address on the bench network, which endpoint traffic reaches guests from. */
const GATEWAY = "10.40.0.1";

export interface EndpointBench {
  /** The globalvm host's namespace, its underlay address, and the WAN it is joined to. */
  host: string;
  underlay: string;
  wan: string;
  /** The host's two guests, serving HTTP on port 80 (network-wiring.ts httpServer). */
  guests: GuestHost;
  at: readonly [GuestAt, GuestAt];
  /** Makes a namespace of the bench (removed with the others). */
  namespace: (role: string) => string;
  namespaces: string[];
  /** Load processes under way, killed by the bench's clean-up. */
  children: Set<ChildProcess>;
  runs: number;
  seconds: number;
  bootTimeoutMs: number;
}

interface HttpSample {
  requests: number;
  seconds: number;
  rps: number;
  p50_ms: number | null;
  p99_ms: number | null;
  max_ms: number | null;
  errors: number;
  error_kinds: Record<string, number>;
  /** Answers per body: per guest that answered. */
  bodies: Record<string, number>;
}

/** bench/http-load.ts from namespace `netns` to host:port for `seconds`. */
function httpLoad(
  children: Set<ChildProcess>,
  netns: string,
  host: string,
  port: number,
  seconds: number,
): Promise<HttpSample> {
  const script = join(import.meta.dirname, "http-load.ts");
  const args = [host, String(port), String(seconds), String(HTTP_CONCURRENCY)];
  const child = spawn("ip", ["netns", "exec", netns, process.execPath, script, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk) => (stdout += chunk));
  child.stderr.on("data", (chunk) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => {
      children.delete(child);
      if (code === 0) resolve(JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}") as HttpSample);
      else reject(new Error(`http-load in ${netns} exited ${code}: ${stderr.trim()}`));
    });
  });
}

interface HttpFigure {
  rps: number;
  p50_ms: number;
  p99_ms: number;
  /** Over all the measured runs. */
  errors: number;
}

export interface EndpointComparison {
  /** Straight to one guest's address, from a client on the network's bridge. */
  direct: HttpFigure;
  /** To the host's endpoint (both guests), from a client on another machine. */
  endpoint: HttpFigure;
  /** To an endpoint whose one guest is the one `direct` asks, from the same client as `endpoint`. */
  endpoint_one_guest: HttpFigure;
  /** endpoint / direct: the issue's figure, target ≥ 0.9. */
  rps_ratio: number;
  p99_ratio: number;
  /** Taking turns over both guests' addresses, from the same client as `direct`. */
  direct_two_guests: HttpFigure;
  /** endpoint_one_guest / direct: the host's path alone, one guest. */
  one_guest_rps_ratio: number;
  one_guest_p99_ratio: number;
  /** endpoint / direct_two_guests: the host's path alone, two guests. */
  two_guests_rps_ratio: number;
  two_guests_p99_ratio: number;
  concurrency: number;
  seconds_per_run: number;
}

export async function throughEndpoint(bench: EndpointBench): Promise<EndpointComparison> {
  const { host: g, wan, guests, namespace } = bench;
  const [rx, tx] = bench.at;
  for (const at of [rx, tx])
    await guests.waitFor(at.instanceId, "bench/http", () => true, bench.bootTimeoutMs);
  // The two guests become a group with an endpoint: what the manager's next reconcile adds.
  await wireGlobalvm(g, bench.underlay, [], [rx, tx], {
    gateway: { address: GATEWAY, prefixLength: PREFIX_LENGTH },
    endpoints: [
      { hostPort: ENDPOINT_PORT, protocol: "tcp", guestPort: 80, backends: [rx.address, tx.address] },
      { hostPort: ONE_GUEST_PORT, protocol: "tcp", guestPort: 80, backends: [rx.address] },
    ],
    firewall: {
      rules: [{ action: "allow", protocol: "tcp", ports: ["80"], sources: ["0.0.0.0/0"] }],
      otherwiseAllow: [`10.40.0.0/${PREFIX_LENGTH}`],
    },
  });
  // Clients on other machines reach the guests through the host, their router.
  sh("ip", "netns", "exec", g, "sysctl", "-qw", "net.ipv4.ip_forward=1");
  const outside = namespace("oc");
  joinWan(outside, wan, "192.0.2.9");
  // A veth on the bridge like a guest's port (not a gvt* tap: no spoofing rules apply to it).
  const inside = outside.replace(/^nboc/, "nbod");
  plugGuest({ name: inside, host: g, bridge: BRIDGE, ip: "10.40.0.250", ports: [] }, bench.namespaces);

  const paths = [
    { name: "direct", label: "direct, 1 VM", netns: inside, host: rx.address, port: 80 },
    { name: "endpoint", label: "endpoint, 2 VMs", netns: outside, host: bench.underlay, port: ENDPOINT_PORT },
    {
      name: "endpoint_one_guest",
      label: "endpoint, 1 VM",
      netns: outside,
      host: bench.underlay,
      port: ONE_GUEST_PORT,
    },
    {
      name: "direct_two_guests",
      label: "direct, 2 VMs",
      netns: inside,
      host: `${rx.address},${tx.address}`,
      port: 80,
    },
  ] as const;
  type Path = (typeof paths)[number];
  const describe = (s: HttpSample) => {
    const share = Object.entries(s.bodies)
      .map(([body, n]) => `${body} ${((100 * n) / Math.max(1, s.requests)).toFixed(0)} %`)
      .join(", ");
    const errors = Object.entries(s.error_kinds)
      .map(([kind, n]) => `${kind} ×${n}`)
      .join(", ");
    return `${s.rps.toFixed(1)} req/s, p50 ${fixed(s.p50_ms ?? Number.NaN, 1)} ms, p99 ${fixed(s.p99_ms ?? Number.NaN, 1)} ms, max ${fixed(s.max_ms ?? Number.NaN, 0)} ms, ${s.errors} errors${errors ? ` (${errors})` : ""} [${share}]`;
  };
  const warm: string[] = [];
  for (const path of paths) {
    const sample = await httpLoad(bench.children, path.netns, path.host, path.port, HTTP_WARM_SECONDS);
    if (sample.requests === 0) {
      throw new Error(`${path.label}: no answer in the warm-up (${describe(sample)})`);
    }
    warm.push(`${path.label} ${sample.rps.toFixed(1)}`);
  }
  console.log(
    `endpoint: warm-up ${warm.join(" / ")} req/s; ${HTTP_CONCURRENCY} at a time, a new connection per request`,
  );
  const samples: Record<Path["name"], HttpSample[]> = {
    direct: [],
    endpoint: [],
    endpoint_one_guest: [],
    direct_two_guests: [],
  };
  for (let run = 1; run <= bench.runs; run++) {
    const order = run % 2 ? paths : ([...paths].reverse() as Path[]);
    for (const path of order) {
      const sample = await httpLoad(bench.children, path.netns, path.host, path.port, bench.seconds);
      samples[path.name].push(sample);
      console.log(`  run ${run} ${path.label.padEnd(15)} ${describe(sample)}`);
    }
  }
  const summary = (list: HttpSample[]): HttpFigure => ({
    rps: median(list.map((s) => s.rps)),
    p50_ms: median(list.map((s) => s.p50_ms ?? Number.NaN)),
    p99_ms: median(list.map((s) => s.p99_ms ?? Number.NaN)),
    errors: list.reduce((sum, s) => sum + s.errors, 0),
  });
  const direct = summary(samples.direct);
  const endpoint = summary(samples.endpoint);
  const oneGuest = summary(samples.endpoint_one_guest);
  const twoGuests = summary(samples.direct_two_guests);
  return {
    direct,
    endpoint,
    endpoint_one_guest: oneGuest,
    direct_two_guests: twoGuests,
    rps_ratio: endpoint.rps / direct.rps,
    p99_ratio: endpoint.p99_ms / direct.p99_ms,
    one_guest_rps_ratio: oneGuest.rps / direct.rps,
    one_guest_p99_ratio: oneGuest.p99_ms / direct.p99_ms,
    two_guests_rps_ratio: endpoint.rps / twoGuests.rps,
    two_guests_p99_ratio: endpoint.p99_ms / twoGuests.p99_ms,
    concurrency: HTTP_CONCURRENCY,
    seconds_per_run: bench.seconds,
  };
}

/** The endpoint rows of the bench's table, through the table's own `row`. */
export function reportEndpoint(
  endpoint: EndpointComparison | undefined,
  row: (name: string, what: string, value: string, p99: string, note?: string) => void,
): void {
  row("endpoint (HTTP)", "", "req/s", "p99 ms");
  if (!endpoint) {
    row("", "(failed)", "", "");
    return;
  }
  const figure = (what: string, f: HttpFigure) =>
    row("", what, fixed(f.rps, 1), fixed(f.p99_ms, 1), f.errors > 0 ? `   ${f.errors} errors` : "");
  const ratio = (what: string, rps: number, p99: number, note: string) =>
    row("", what, fixed(rps, 3), fixed(p99, 3), `   ${note}`);
  figure("direct, 1 VM", endpoint.direct);
  figure("endpoint, 2 VMs", endpoint.endpoint);
  const verdict = endpoint.rps_ratio >= 0.9 ? "OK" : "UNDER TARGET";
  ratio("endpoint/direct", endpoint.rps_ratio, endpoint.p99_ratio, `req/s ≥ 0.9: ${verdict}`);
  figure("endpoint, 1 VM", endpoint.endpoint_one_guest);
  ratio(
    "ep/direct 1 VM",
    endpoint.one_guest_rps_ratio,
    endpoint.one_guest_p99_ratio,
    "(endpoint, 1 VM ÷ direct, 1 VM: the host's path alone)",
  );
  figure("direct, 2 VMs", endpoint.direct_two_guests);
  ratio(
    "ep/direct 2 VMs",
    endpoint.two_guests_rps_ratio,
    endpoint.two_guests_p99_ratio,
    "(endpoint, 2 VMs ÷ direct, 2 VMs: the host's path alone)",
  );
}
