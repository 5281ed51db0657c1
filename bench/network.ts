// npm run bench:network — what globalvm's guest networking costs, against the same QEMU guests
// wired by hand, in one run (not a test):
//   1. one datacenter: two guests on globalvm's bridge, taps and nftables rules (built by the
//      manager's LinuxHostNetwork) vs the same guests on a bare bridge and taps, no nftables;
//      then, on the same globalvm host and guests, the two of them made a group with an endpoint:
//      HTTP requests per second and p99 latency through the endpoint to both guests (a client on
//      another machine, across a WAN, to the host's underlay address and endpoint port: DNAT
//      round robin, SNAT to the gateway, the network's firewall) vs straight to one guest's
//      address (a client plugged into the network's bridge like a guest). Each request is a new
//      TCP connection (bench/http-load.ts; BENCH_NETWORK_HTTP_CONCURRENCY at a time, default 8)
//      to busybox httpd. Two guests do not serve like one (twice the CPU, but each idles between
//      requests), so two controls take turns with those: an endpoint whose one guest is the one
//      asked directly, and the direct client taking turns over both guests' addresses; endpoint
//      against direct to the same guests is the host's path alone. The four take turns as below,
//      BENCH_NETWORK_SECONDS each. Target: endpoint (2 VMs) ≥ 0.9 × direct (1 VM) requests/s;
//   2. two datacenters (two host namespaces joined by a bridge in a "WAN" namespace): globalvm's
//      VXLAN tunnels vs a hand-made point-to-point VXLAN into a bare bridge;
//   3. through the real stack (control plane, two managers): from `POST /v1/vm-groups` of a
//      `client` group to its guest's first TCP connection to a `web` group's instance in the
//      other datacenter, whose address it gets through metadata_from.
// For 1 and 2, the guests run the same image, machine shape, MTU and tap names on both sides, so
// only the host's wiring differs. The guest is busybox (no iperf): nc streams zeros, ping gives
// the round trip. globalvm and bare take turns, BENCH_NETWORK_RUNS (default 3) times, after one
// warm-up each that sizes the transfers to BENCH_NETWORK_SECONDS (default 6) s. Target: globalvm
// throughput ≥ 0.9 × bare. Under TCG, the guests' emulated CPUs are the bottleneck; the ratio is
// what the host path adds on top, and that is what this compares.
//
// Everything lives in network namespaces made here and removed at the end (Ctrl-C included).
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { addNamespace, joinWan, makeWan, removeNamespaces } from "../test/network/namespaces.ts";
import { ensureGuestImage, killRecordedVms } from "../test/support/compute.ts";
import { type EndpointComparison, reportEndpoint, throughEndpoint } from "./network-endpoint.ts";
import {
  BLOCK_BYTES,
  benchGuest,
  type GuestAt,
  GuestHost,
  httpServer,
  RECEIVER,
  sender,
  wireBare,
  wireGlobalvm,
} from "./network-wiring.ts";
import { fixed, median } from "./stats.ts";

const RUNS = Number(process.env.BENCH_NETWORK_RUNS ?? 3);
const SECONDS = Number(process.env.BENCH_NETWORK_SECONDS ?? 6);
/** Blocks of the warm-up transfer, which sizes the measured ones. */
const WARM_BLOCKS = 160;
/** Four TCG guests booting at once on a busy two-core host take their time. */
const BOOT_TIMEOUT_MS = 400_000;
/** The one-datacenter host's underlay address, where its endpoint is reached. */
const UNDERLAY = "192.0.2.1";

const tag = randomBytes(3).toString("hex");
const namespaces: string[] = [];
const hosts = new Set<GuestHost>();
const dataDir = mkdtempSync(join(tmpdir(), "gvnb-"));
let stackChild: ChildProcess | undefined;
const loadChildren = new Set<ChildProcess>();

const rx: GuestAt = { instanceId: "bench-rx", address: "10.40.0.2" };
const tx: GuestAt = { instanceId: "bench-tx", address: "10.40.0.3" };

let cleaning: Promise<void> | undefined;
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    if (stackChild && stackChild.exitCode === null) {
      stackChild.kill("SIGTERM");
      await new Promise((resolve) => stackChild?.once("exit", resolve));
    }
    for (const child of loadChildren) child.kill("SIGKILL");
    await Promise.allSettled([...hosts].map((host) => host.close()));
    killRecordedVms(dataDir);
    removeNamespaces(namespaces);
    rmSync(dataDir, { recursive: true, force: true });
  })();
  return cleaning;
}
process.on("SIGINT", () => {
  console.error("interrupted: removing guests and namespaces");
  cleanUp().finally(() => process.exit(130));
});

function namespace(role: string): string {
  const name = `nb${role}-${tag}`;
  addNamespace(name, namespaces);
  return name;
}

function startGuests(netns: string, guests: { at: GuestAt; script: string }[]): GuestHost {
  const dir = join(dataDir, netns.slice(0, 4));
  const host = new GuestHost(
    netns,
    dir,
    guests.map((g) => benchGuest(g.at, g.script)),
  );
  hosts.add(host);
  return host;
}

/** One sending and one receiving guest, wherever each runs. */
interface Pair {
  wiring: "globalvm" | "bare";
  sending: GuestHost;
  receiving: GuestHost;
}

interface Sample {
  mbPerS: number;
  rttMs: number;
}

let round = 0;
async function transfer(pair: Pair, blocks: number): Promise<Sample> {
  const id = String(++round);
  const ofRound = (value: string) => value.split(" ")[0] === id;
  pair.sending.set(tx.instanceId, { "bench-go": `${id} ${blocks}` });
  const [received, result] = await Promise.all([
    pair.receiving.waitFor(rx.instanceId, "bench/received", ofRound, 300_000),
    pair.sending.waitFor(tx.instanceId, "bench/result", ofRound, 300_000),
  ]);
  const [, ok, bytes, rtt] = result.split(" ");
  if (ok !== "ok") throw new Error(`${pair.wiring}: the transfer failed (${result})`);
  const ms = Number(received.split(" ")[1]);
  return { mbPerS: Number(bytes) / 1e6 / (ms / 1000), rttMs: Number(rtt) };
}

interface Comparison {
  globalvm: { mb_per_s: number; rtt_ms: number };
  bare: { mb_per_s: number; rtt_ms: number };
  throughput_ratio: number;
  rtt_ratio: number;
  mb_per_transfer: number;
}

async function compare(name: string, globalvm: Pair, bare: Pair): Promise<Comparison> {
  for (const pair of [globalvm, bare]) {
    await pair.receiving.waitFor(rx.instanceId, "bench/ready", () => true, BOOT_TIMEOUT_MS);
    await pair.sending.waitFor(tx.instanceId, "bench/ready", () => true, BOOT_TIMEOUT_MS);
  }
  const warm = [await transfer(globalvm, WARM_BLOCKS), await transfer(bare, WARM_BLOCKS)];
  const fastest = Math.max(...warm.map((w) => w.mbPerS));
  const blocks = Math.max(WARM_BLOCKS, Math.ceil((SECONDS * fastest * 1e6) / BLOCK_BYTES));
  const mb = (blocks * BLOCK_BYTES) / 1e6;
  console.log(
    `${name}: warm-up ${warm.map((w) => w.mbPerS.toFixed(1)).join(" / ")} MB/s → ${mb.toFixed(0)} MB per transfer`,
  );
  const samples: Record<Pair["wiring"], Sample[]> = { globalvm: [], bare: [] };
  for (let run = 1; run <= RUNS; run++) {
    // Alternating which goes first spreads a busy host's slow spells over both.
    const order = run % 2 ? [globalvm, bare] : [bare, globalvm];
    for (const pair of order) {
      const sample = await transfer(pair, blocks);
      samples[pair.wiring].push(sample);
      console.log(
        `  run ${run} ${pair.wiring.padEnd(8)} ${sample.mbPerS.toFixed(2)} MB/s, RTT ${sample.rttMs.toFixed(3)} ms`,
      );
    }
  }
  const summary = (list: Sample[]) => ({
    mb_per_s: median(list.map((s) => s.mbPerS)),
    rtt_ms: median(list.map((s) => s.rttMs)),
  });
  const g = summary(samples.globalvm);
  const b = summary(samples.bare);
  return {
    globalvm: g,
    bare: b,
    throughput_ratio: g.mb_per_s / b.mb_per_s,
    rtt_ratio: g.rtt_ms / b.rtt_ms,
    mb_per_transfer: mb,
  };
}

async function oneDatacenter(): Promise<{ comparison?: Comparison; endpoint?: EndpointComparison }> {
  // The WAN only carries the endpoint figure's client: no peer, so no guest traffic leaves this
  // host, as in test/network/guests.test.ts.
  const wan = namespace("ow");
  makeWan(wan);
  const g = namespace("g");
  joinWan(g, wan, UNDERLAY);
  await wireGlobalvm(g, UNDERLAY, [], [rx, tx]);
  const b = namespace("b");
  wireBare(b, [rx, tx]);
  // Every guest also serves HTTP (idle until the endpoint figure), so both hosts' are the same.
  const guests = [
    { at: rx, script: `${httpServer(rx.instanceId)}\n${RECEIVER}` },
    { at: tx, script: `${httpServer(tx.instanceId)}\n${sender(rx.address)}` },
  ];
  const gHost = startGuests(g, guests);
  const bHost = startGuests(b, guests);
  try {
    const comparison = await part("one datacenter", () =>
      compare(
        "one datacenter",
        { wiring: "globalvm", sending: gHost, receiving: gHost },
        { wiring: "bare", sending: bHost, receiving: bHost },
      ),
    );
    // Done with the bare host: its guests would only take CPU from the endpoint figure.
    await bHost.close();
    hosts.delete(bHost);
    const endpoint = await part("endpoint", () =>
      throughEndpoint({
        host: g,
        underlay: UNDERLAY,
        wan,
        guests: gHost,
        at: [rx, tx],
        namespace,
        namespaces,
        children: loadChildren,
        runs: RUNS,
        seconds: SECONDS,
        bootTimeoutMs: BOOT_TIMEOUT_MS,
      }),
    );
    return { comparison, endpoint };
  } finally {
    for (const host of [gHost, bHost]) {
      await host.close();
      hosts.delete(host);
    }
  }
}

async function twoDatacenters(): Promise<Comparison> {
  const wan = namespace("w");
  makeWan(wan);
  const [ga, gb, ba, bb] = ["ga", "gb", "ba", "bb"].map(namespace) as [string, string, string, string];
  joinWan(ga, wan, "192.0.2.1");
  joinWan(gb, wan, "192.0.2.2");
  joinWan(ba, wan, "192.0.2.11");
  joinWan(bb, wan, "192.0.2.12");
  await wireGlobalvm(ga, "192.0.2.1", ["192.0.2.2"], [rx]);
  await wireGlobalvm(gb, "192.0.2.2", ["192.0.2.1"], [tx]);
  wireBare(ba, [rx], { local: "192.0.2.11", remote: "192.0.2.12" });
  wireBare(bb, [tx], { local: "192.0.2.12", remote: "192.0.2.11" });
  const receiving = [{ at: rx, script: RECEIVER }];
  const sending = [{ at: tx, script: sender(rx.address) }];
  const started = [
    startGuests(ga, receiving),
    startGuests(gb, sending),
    startGuests(ba, receiving),
    startGuests(bb, sending),
  ] as const;
  try {
    return await compare(
      "two datacenters",
      { wiring: "globalvm", receiving: started[0], sending: started[1] },
      { wiring: "bare", receiving: started[2], sending: started[3] },
    );
  } finally {
    for (const host of started) {
      await host.close();
      hosts.delete(host);
    }
  }
}

interface StackRun {
  ready_ms?: number;
  succeeded_ms?: number;
  connected_ms?: number;
  attempts?: string;
}

async function throughTheStack(): Promise<StackRun[]> {
  const wan = namespace("sw");
  makeWan(wan, "192.0.2.100");
  const regions = [
    { name: "eu-west", netns: namespace("sa"), underlay: "192.0.2.1" },
    { name: "us-east", netns: namespace("sb"), underlay: "192.0.2.2" },
  ];
  for (const region of regions) joinWan(region.netns, wan, region.underlay);
  const config = JSON.stringify({ controlPlaneHost: "192.0.2.100", runs: RUNS, regions });
  const child = spawn(
    "ip",
    ["netns", "exec", wan, process.execPath, join(import.meta.dirname, "network-stack.ts"), config],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  stackChild = child;
  let output = "";
  child.stdout.on("data", (chunk) => (output += chunk));
  await new Promise((resolve) => child.once("exit", resolve));
  const result = JSON.parse(output.trim().split("\n").at(-1) ?? "{}") as {
    runs?: StackRun[];
    error?: string;
    logs?: string;
  };
  if (result.error) throw new Error(`${result.error}\n${result.logs ?? ""}`);
  return result.runs ?? [];
}

const failures: string[] = [];
async function part<T>(name: string, run: () => Promise<T>): Promise<T | undefined> {
  try {
    return await run();
  } catch (error) {
    failures.push(`${name}: ${error instanceof Error ? error.message : error}`);
    console.error(`${name} failed: ${error instanceof Error ? error.stack : error}`);
    return undefined;
  }
}

try {
  ensureGuestImage();
  console.log(`runs: ${RUNS}, transfers of ~${SECONDS} s (BENCH_NETWORK_RUNS, BENCH_NETWORK_SECONDS)`);
  const { comparison: one, endpoint } = (await part("one datacenter setup", oneDatacenter)) ?? {};
  const two = await part("two datacenters", twoDatacenters);
  const stack = await part("POST to first connection", throughTheStack);

  const row = (name: string, what: string, mbPerS: string, rtt: string, note = "") =>
    console.log(`${name.padEnd(17)}${what.padEnd(15)}${mbPerS.padStart(8)}${rtt.padStart(10)}${note}`);
  console.log("");
  row("case", "", "MB/s", "RTT ms");
  for (const [name, c] of [
    ["one datacenter", one],
    ["two datacenters", two],
  ] as const) {
    if (!c) {
      row(name, "(failed)", "", "");
      continue;
    }
    row(name, "globalvm", fixed(c.globalvm.mb_per_s, 2), fixed(c.globalvm.rtt_ms, 3));
    row(name, "bare", fixed(c.bare.mb_per_s, 2), fixed(c.bare.rtt_ms, 3));
    const verdict = c.throughput_ratio >= 0.9 ? "OK" : "UNDER TARGET";
    row(
      name,
      "globalvm/bare",
      fixed(c.throughput_ratio, 3),
      fixed(c.rtt_ratio, 3),
      `   throughput ≥ 0.9: ${verdict}`,
    );
  }
  console.log("");
  reportEndpoint(endpoint, row);
  const connected = (stack ?? []).map((r) => (r.connected_ms ?? Number.NaN) / 1000);
  if (stack) {
    const seconds = (key: keyof StackRun) =>
      fixed(median(stack.map((r) => Number(r[key] ?? Number.NaN) / 1000)), 1);
    console.log(
      `\nPOST /v1/vm-groups → first TCP connection across two datacenters: median ${seconds("connected_ms")} s over ${stack.length} (${connected.map((s) => fixed(s, 1)).join(", ")} s; guest attempts at 0.2 s: ${stack.map((r) => r.attempts).join(", ")}; operation succeeded at ${seconds("succeeded_ms")} s, instance ready at ${seconds("ready_ms")} s)`,
    );
  } else console.log("\nPOST /v1/vm-groups → first TCP connection: (failed)");
  console.log(
    JSON.stringify({
      bench: "network",
      runs: RUNS,
      one_datacenter: one ?? null,
      two_datacenters: two ?? null,
      endpoint: endpoint ?? null,
      post_to_connection_s: stack ? median(connected) : null,
      post_to_connection_runs: stack ?? null,
      failures,
    }),
  );
} finally {
  await cleanUp();
}
if (failures.length > 0) process.exitCode = 1;
