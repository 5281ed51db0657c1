/**
 * npm run bench:transfer [-- --size-mib N | --ci] [--runs R] [--keep] [--only 2,5]
 *
 * Builds its own images (incompressible, and filesystem-like with zero runs), starts two
 * regional managers (transfer service only) on loopback and prints, each against a
 * reference measured in the same run:
 *   1. cold transfer manager -> manager (every chunk verified, image assembled, fsynced)
 *      vs curl downloading the same file from a plain HTTP server to disk;
 *   2. a 1% delta (4 KiB blocks overwritten at seeded scattered offsets): bytes on the wire
 *      and wall time vs rsync (daemon on loopback) updating the old copy; and, since a pull is
 *      durable before it is available and rsync by default is not, vs rsync --fsync, with the
 *      time this disk takes to copy the base and sync the copy (what any durable update that
 *      rewrites the image costs on a filesystem without reflinks);
 *   3. a 1 MiB insertion at 10% of the image: bytes on the wire vs rsync;
 *   4. chunk+hash throughput of one core vs sha256sum on the same file;
 *   5. upload client -> manager vs curl -T of the same file to a plain receiver writing it to disk:
 *      as users upload (a first upload goes whole), and as chunks (how an update goes);
 *   6. the cold transfer again with the source's files in the page cache (its disk not the limit),
 *      vs curl from a cached file.
 * Each transfer also prints the CPU seconds per GiB it cost on each side (client or source, and
 * the receiving manager), read from /proc for the managers and from process.cpuUsage() here.
 * Times are medians of --runs runs (default 3), after a warm-up. `--only` runs the parts named
 * (the deltas start from the targets the cold transfer leaves, so 2 and 3 bring 1 along).
 *
 * Before each timed run, ours or the reference's, every file of the benchmark is evicted from
 * the page cache (sync, then dd iflag=nocache): both sides read from disk, as a datacenter's
 * images mostly are, and start with the same free memory. Left alone, the comparison depended
 * on history: rsync's basis was copied a moment before its run and was cached, the target's
 * base image minutes before and mostly was not. On this kind of VM free memory matters too:
 * idle memory is handed back to the host within seconds, and writing into memory the host must
 * fault in again is slow, so whichever side had just freed more memory wrote faster.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createReadStream, createWriteStream } from "node:fs";
import { copyFile, cp, mkdir, open, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { parseArgs, promisify } from "node:util";
import { uploadImage } from "../client/upload.ts";
import { chunkFile } from "../common/image-format/chunk-file.ts";
import { DEFAULT_CHUNKING } from "../common/image-format/chunking.ts";
import type { Manifest } from "../common/image-format/manifest.ts";
import { manifestDigest } from "../common/image-format/manifest-digest.ts";
import {
  createTestKeys,
  type ManagerProcess,
  startManager,
  stopAllManagers,
  type TestKeys,
} from "../test/support/transfer.ts";
import { median } from "./stats.ts";

const run = promisify(execFile);
const { values } = parseArgs({
  options: {
    "size-mib": { type: "string" },
    ci: { type: "boolean", default: false },
    runs: { type: "string", default: "3" },
    keep: { type: "boolean", default: false },
    only: { type: "string" },
  },
});
const ONLY = values.only === undefined ? undefined : new Set(values.only.split(",").map(Number));
/** Whether the bench runs part `n` (numbered as above). */
const runs = (n: number) => ONLY === undefined || ONLY.has(n) || (n === 1 && (ONLY.has(2) || ONLY.has(3)));
const SIZE = Number(values["size-mib"] ?? (values.ci ? 64 : 1024)) * 1024 * 1024;
const RUNS = Number(values.runs);
const WORK = join(tmpdir(), `globalvm-bench-${process.pid}`);

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
const gbps = (bytes: number, seconds: number) => `${(bytes / seconds / 1e9).toFixed(2)} GB/s`;
async function timed(task: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await task();
  return (performance.now() - start) / 1000;
}

/** Evicts every file of the benchmark from the page cache (see the top of this file). */
async function evictPageCache(): Promise<void> {
  await run("sync"); // dirty pages cannot be evicted
  const entries = await readdir(WORK, { recursive: true, withFileTypes: true });
  for (const file of entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name))) {
    await run("dd", [`if=${file}`, "iflag=nocache", "count=0", "status=none"]);
  }
}

/** Warms the page cache with every file under `dir` (read once, thrown away). */
async function warmPageCache(dir: string): Promise<void> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  for (const file of entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name))) {
    await run("dd", [`if=${file}`, "of=/dev/null", "bs=1M", "status=none"]);
  }
}

const CLOCK_TICKS_PER_SECOND = 100;

/** User + system CPU seconds a process has used (/proc/<pid>/stat, fields 14 and 15). */
async function cpuSecondsOf(pid: number | undefined): Promise<number> {
  if (pid === undefined) return Number.NaN;
  const stat = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1]?.split(" ") ?? [];
  // After "pid (comm) ", the fields are numbered from 3: utime is the 12th, stime the 13th here.
  return (Number(stat[11]) + Number(stat[12])) / CLOCK_TICKS_PER_SECOND;
}

/** This process's user + system CPU seconds. */
function ownCpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

/** CPU seconds per GiB moved, as a cell. */
const perGiB = (seconds: number, bytes: number) => `${(seconds / (bytes / 2 ** 30)).toFixed(2)} CPU s/GiB`;

/** The row cells of our time for SIZE bytes against a reference's: speeds, and our speed as a ratio of its. */
const versus = (label: string, seconds: number, reference: string, referenceSeconds: number) => [
  label,
  gbps(SIZE, seconds),
  `${reference} ${gbps(SIZE, referenceSeconds)}`,
  `${(referenceSeconds / seconds).toFixed(2)}x of ${reference}`,
];

/** The row cells of a pull's CPU cost on each side, medians of [source, target] seconds. */
const cpuCells = (runs: Array<[number, number]>) => [
  "",
  `source ${perGiB(median(runs.map((c) => c[0])), SIZE)}`,
  `target ${perGiB(median(runs.map((c) => c[1])), SIZE)}`,
  "",
];

/** A plain HTTP receiver: each PUT's body written to a file of `dir`, as curl -T sends it. */
async function startFileReceiver(dir: string): Promise<{ url: string; close: () => void }> {
  const server = createServer((req, res) => {
    const path = join(dir, (req.url ?? "/").slice(1));
    pipeline(req, createWriteStream(path, { highWaterMark: 1 << 20 })).then(
      () => res.writeHead(201).end(),
      () => res.writeHead(500).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => server.close() };
}

/** xorshift32 stream: reproducible incompressible bytes. */
function* xorshift(seed: number): Generator<number> {
  let x = seed >>> 0 || 1;
  for (;;) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    yield x >>> 0;
  }
}

function fillRandom(target: Buffer, random: Generator<number>): void {
  const words = new Uint32Array(target.buffer, target.byteOffset, target.length >>> 2);
  for (let i = 0; i < words.length; i++) words[i] = random.next().value as number;
}

const WORDS = (
  "the of and to in is that for it as was with be by on not he this are or his from at which but have an they " +
  "you were her she there been one all we their has would when if so no will more can out other its into only " +
  "kernel module config usr lib share bin etc var log cache systemd network device driver firmware package"
).split(" ");

/** Text-like bytes: words drawn at random, compressible but not periodic (unlike a repeated phrase). */
function fillText(target: Buffer, random: Generator<number>): void {
  let at = 0;
  while (at < target.length) {
    const r = random.next().value as number;
    const word = WORDS[r % WORDS.length] as string;
    at += target.write(r & 0x100000 ? `${word}\n` : `${word} `, at, "latin1");
  }
}

/**
 * Writes an image in 16 MiB pieces. Filesystem-like: 4 KiB-aligned runs of zeros
 * (unallocated space, ~40%), of text-like data (~30%) and of random data (compressed
 * files, ~30%), each run between 64 KiB and 8 MiB.
 */
async function writeImage(
  path: string,
  size: number,
  kind: "random" | "filesystem",
  seed: number,
): Promise<void> {
  const file = await open(path, "w");
  const random = xorshift(seed);
  const piece = Buffer.allocUnsafeSlow(16 << 20);
  let run = 0;
  let runKind = 0;
  for (let offset = 0; offset < size; offset += piece.length) {
    const length = Math.min(piece.length, size - offset);
    if (kind === "random") {
      fillRandom(piece, random);
    } else {
      for (let at = 0; at < length; at += 4096) {
        if (run === 0) {
          run = 16 + ((random.next().value as number) % 2048); // 64 KiB .. 8 MiB in 4 KiB blocks
          const r = (random.next().value as number) % 10;
          runKind = r < 4 ? 0 : r < 7 ? 1 : 2;
        }
        run--;
        const block = piece.subarray(at, at + 4096);
        if (runKind === 0) block.fill(0);
        else if (runKind === 1) fillText(block, random);
        else fillRandom(block, random);
      }
    }
    await file.write(piece, 0, length, offset);
  }
  await file.close();
}

/** Overwrites `count` 4 KiB blocks at seeded scattered offsets. */
async function overwriteBlocks(path: string, size: number, count: number, seed: number): Promise<void> {
  const file = await open(path, "r+");
  const random = xorshift(seed);
  const block = Buffer.allocUnsafeSlow(4096);
  const blocks = size / 4096;
  for (let i = 0; i < count; i++) {
    fillRandom(block, random);
    const at = ((random.next().value as number) % blocks) * 4096;
    await file.write(block, 0, 4096, at);
  }
  await file.close();
}

async function insertAt(
  source: string,
  target: string,
  at: number,
  bytes: number,
  seed: number,
): Promise<void> {
  const inserted = Buffer.allocUnsafeSlow(bytes);
  fillRandom(inserted, xorshift(seed));
  const out = await open(target, "w");
  const input = await open(source, "r");
  const size = (await input.stat()).size;
  const buffer = Buffer.allocUnsafeSlow(16 << 20);
  let written = 0;
  const copyRange = async (from: number, to: number) => {
    for (let offset = from; offset < to; offset += buffer.length) {
      const { bytesRead } = await input.read(buffer, 0, Math.min(buffer.length, to - offset), offset);
      await out.write(buffer, 0, bytesRead, written);
      written += bytesRead;
    }
  };
  await copyRange(0, at);
  await out.write(inserted, 0, bytes, written);
  written += bytes;
  await copyRange(at, size);
  await input.close();
  await out.close();
}

async function startFileServer(dir: string): Promise<{ url: string; close: () => void }> {
  const server = createServer((req, res) => {
    const path = join(dir, (req.url ?? "/").slice(1));
    stat(path).then(
      (info) => {
        res.writeHead(200, { "content-length": info.size, "content-type": "application/octet-stream" });
        pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), res).catch(() => res.destroy());
      },
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => server.close() };
}

async function startRsyncDaemon(dir: string): Promise<{ url: string; child: ChildProcess }> {
  const port = 20000 + (process.pid % 20000);
  const config = join(WORK, "rsyncd.conf");
  await writeFile(
    config,
    `address = 127.0.0.1\nport = ${port}\nuse chroot = no\npid file = ${join(WORK, "rsyncd.pid")}\n[images]\n  path = ${dir}\n  read only = yes\n  uid = root\n  gid = root\n`,
  );
  const child = spawn("rsync", ["--daemon", "--no-detach", `--config=${config}`], { stdio: "ignore" });
  for (let i = 0; i < 50; i++) {
    try {
      await run("rsync", [`rsync://127.0.0.1:${port}/images/`]);
      return { url: `rsync://127.0.0.1:${port}/images`, child };
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new Error("rsync daemon did not start");
}

/** rsync's own count of bytes on the wire: sent + received, from --stats. */
async function rsyncUpdate(
  url: string,
  name: string,
  dest: string,
  flags: readonly string[] = [],
): Promise<{ seconds: number; wire: number }> {
  let output = "";
  const seconds = await timed(async () => {
    output = (
      await run("rsync", ["--stats", "--no-whole-file", ...flags, `${url}/${name}`, dest], {
        maxBuffer: 1 << 24,
      })
    ).stdout;
  });
  const number = (label: string) =>
    Number((output.match(new RegExp(`${label}: ([\\d,]+)`))?.[1] ?? "0").replaceAll(",", ""));
  return { seconds, wire: number("Total bytes sent") + number("Total bytes received") };
}

interface Pulled {
  seconds: number;
  wire: number;
  /** As the target measured them: receiving chunks, then completing (fill, fsync, digest check). */
  receiving: number;
  completing: number;
  /** CPU seconds the source and the target manager spent on it. */
  sourceCpu: number;
  targetCpu: number;
}

async function pullVia(
  manager: ManagerProcess,
  source: ManagerProcess,
  keys: TestKeys,
  imageId: string,
  version: number,
  digest: string,
  size: number,
  /** The catalog's manifest digest, as the control plane gives it to a pulling manager. */
  manifestDigest: string,
): Promise<Pulled> {
  let answer: {
    wireBytes?: number;
    state?: string;
    detail?: string;
    secondsTransferring?: number;
    secondsCompleting?: number;
  } = {};
  const token = await keys.token(imageId, version, "dc-a", "read");
  const cpuBefore = [await cpuSecondsOf(source.child.pid), await cpuSecondsOf(manager.child.pid)];
  const seconds = await timed(async () => {
    const response = await fetch(`${manager.url}/_test/pull`, {
      method: "POST",
      body: JSON.stringify({
        imageId,
        version,
        expectedDigest: digest,
        expectedSize: size,
        expectedManifestDigest: manifestDigest,
        sources: [{ url: source.url, token }],
      }),
    });
    answer = (await response.json()) as typeof answer;
  });
  if (answer.state !== "available") throw new Error(`pull failed: ${JSON.stringify(answer)}`);
  return {
    seconds,
    sourceCpu: (await cpuSecondsOf(source.child.pid)) - (cpuBefore[0] as number),
    targetCpu: (await cpuSecondsOf(manager.child.pid)) - (cpuBefore[1] as number),
    wire: answer.wireBytes ?? Number.NaN,
    receiving: answer.secondsTransferring ?? Number.NaN,
    completing: answer.secondsCompleting ?? Number.NaN,
  };
}

/** 4. chunk+hash throughput of one core vs sha256sum, on the same (cached) file. */
async function chunkHash(kind: string, path: string, row: (...cells: string[]) => void): Promise<void> {
  await chunkFile(path); // warm-up (JIT, page cache)
  const chunkTimes: number[] = [];
  const shaTimes: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    chunkTimes.push(await timed(() => chunkFile(path)));
    shaTimes.push(await timed(() => run("sha256sum", [path])));
  }
  row(
    kind,
    "chunk+hash (1 core)",
    gbps(SIZE, median(chunkTimes)),
    `sha256sum ${gbps(SIZE, median(shaTimes))}`,
    `${(median(shaTimes) / median(chunkTimes)).toFixed(2)}x`,
  );
}

async function main(): Promise<void> {
  await mkdir(WORK, { recursive: true });
  const keys = await createTestKeys(WORK);
  const images = join(WORK, "images");
  await mkdir(images);
  console.log(
    `globalvm transfer benchmark: ${mib(SIZE)} images, ${RUNS} runs, medians, page cache emptied before each run; work dir ${WORK}`,
  );
  // The figures depend on what else the machine does: say how busy it was.
  console.log(
    `load average at start: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}`,
  );
  console.log(
    `chunking: FastCDC min ${DEFAULT_CHUNKING.minLength / 1024} KiB, average ${DEFAULT_CHUNKING.averageLength / 1024} KiB, max ${DEFAULT_CHUNKING.maxLength / 1024} KiB; SHA-256 per chunk and per image\n`,
  );
  const source = await startManager({
    dataDir: join(WORK, "source"),
    datacenter: "dc-a",
    publicKeyFile: keys.publicKeyFile,
  });
  const fileServer = await startFileServer(images);
  const receiver = await startFileReceiver(WORK);
  const rsyncd = await startRsyncDaemon(images);
  const blocks = Math.round((SIZE * 0.01) / 4096); // 2,621 for 1 GiB
  const rows: string[][] = [];
  const row = (...cells: string[]) => rows.push(cells);

  try {
    for (const kind of ["random", "filesystem"] as const) {
      const v1 = `${kind}-v1.img`;
      const v2 = `${kind}-v2.img`;
      const v3 = `${kind}-v3.img`;
      await writeImage(join(images, v1), SIZE, kind, kind === "random" ? 1 : 2);
      await copyFile(join(images, v1), join(images, v2));
      await overwriteBlocks(join(images, v2), SIZE, blocks, 3);
      await insertAt(join(images, v1), join(images, v3), Math.floor((SIZE * 0.1) / 4096) * 4096, 1 << 20, 4);

      // 4. chunk+hash, one core, vs sha256sum.
      if (runs(4)) await chunkHash(kind, join(images, v1), row);

      // Upload the three versions to the source manager.
      const manifests: Manifest[] = [];
      for (const [version, name] of [
        [1, v1],
        [2, v2],
        [3, v3],
      ] as const) {
        const upload = { path: join(images, name), managerUrl: source.url, imageId: kind, version };
        manifests[version] = await chunkFile(upload.path);
        await uploadImage({ ...upload, token: await keys.token(kind, version, "dc-a", "upload") });
      }

      // 5. upload to a fresh manager each run vs curl -T to a plain receiver; both from disk.
      // As users upload (the manager holds none of it: sent whole), then as chunks, the way an
      // update or a re-upload goes.
      if (runs(5)) {
        type Upload = { seconds: number; clientCpu: number; managerCpu: number };
        const uploads: Record<"auto" | "chunks", Upload[]> = { auto: [], chunks: [] };
        const curlUploads: number[] = [];
        for (let r = 0; r <= RUNS; r++) {
          const received = join(WORK, "received");
          await mkdir(received, { recursive: true });
          await evictPageCache();
          const curlSeconds = await timed(() =>
            run("curl", ["-s", "-f", "-T", join(images, v1), `${receiver.url}/received/${v1}`]),
          );
          await rm(received, { recursive: true });
          for (const method of ["auto", "chunks"] as const) {
            const dataDir = join(WORK, `${kind}-upload-${r}`);
            const target = await startManager({
              dataDir,
              datacenter: "dc-a",
              publicKeyFile: keys.publicKeyFile,
            });
            const token = await keys.token(kind, 1, "dc-a", "upload");
            const upload = {
              path: join(images, v1),
              managerUrl: target.url,
              imageId: kind,
              version: 1,
              token,
            };
            await evictPageCache();
            const before = [ownCpuSeconds(), await cpuSecondsOf(target.child.pid)];
            const seconds = await timed(() => uploadImage({ ...upload, method }));
            const clientCpu = ownCpuSeconds() - (before[0] as number);
            const managerCpu = (await cpuSecondsOf(target.child.pid)) - (before[1] as number);
            await target.kill("SIGTERM");
            await rm(dataDir, { recursive: true });
            if (r > 0) uploads[method].push({ seconds, clientCpu, managerCpu }); // run 0 warms up
          }
          if (r > 0) curlUploads.push(curlSeconds);
        }
        for (const [method, label] of [
          ["auto", "5. upload client -> manager"],
          ["chunks", "5. upload, as chunks"],
        ] as const) {
          const measured = uploads[method];
          row(kind, ...versus(label, median(measured.map((u) => u.seconds)), "curl -T", median(curlUploads)));
          row(
            kind,
            "",
            `client ${perGiB(median(measured.map((u) => u.clientCpu)), SIZE)}`,
            `manager ${perGiB(median(measured.map((u) => u.managerCpu)), SIZE)}`,
            "",
          );
        }
      }
      const m1 = manifests[1] as Manifest;
      const m2 = manifests[2] as Manifest;
      const m3 = manifests[3] as Manifest;

      const targets: string[] = [];
      // 1. cold transfer vs curl (and curl followed by an fsync, for what durability costs).
      if (runs(1)) {
        const curlTimes: number[] = [];
        const curlSyncTimes: number[] = [];
        const coldTimes: number[] = [];
        const coldPhases: Array<[number, number]> = [];
        const coldCpu: Array<[number, number]> = [];

        for (let r = 0; r <= RUNS; r++) {
          const dest = join(WORK, `curl-${r}.img`);
          await evictPageCache();
          const seconds = await timed(() => run("curl", ["-s", "-o", dest, `${fileServer.url}/${v1}`]));
          const syncSeconds = await timed(() => run("sync", [dest]));
          await rm(dest);
          const dataDir = join(WORK, `${kind}-target-${r}`);
          const target = await startManager({
            dataDir,
            datacenter: "dc-b",
            publicKeyFile: keys.publicKeyFile,
          });
          await evictPageCache();
          const pulled = await pullVia(target, source, keys, kind, 1, m1.digest, m1.size, manifestDigest(m1));
          await target.kill("SIGTERM");
          if (r === 0) {
            await rm(dataDir, { recursive: true });
            continue; // warm-up
          }
          targets.push(dataDir);
          curlTimes.push(seconds);
          curlSyncTimes.push(seconds + syncSeconds);
          coldTimes.push(pulled.seconds);
          coldPhases.push([pulled.receiving, pulled.completing]);
          coldCpu.push([pulled.sourceCpu, pulled.targetCpu]);
        }
        const cold = median(coldTimes);
        row(kind, ...versus("1. cold transfer", cold, "curl", median(curlTimes)));
        row(
          kind,
          "",
          "",
          `curl+fsync ${gbps(SIZE, median(curlSyncTimes))}`,
          `${(median(curlSyncTimes) / cold).toFixed(2)}x of curl+fsync`,
        );
        row(
          kind,
          "",
          `receiving ${median(coldPhases.map((p) => p[0])).toFixed(2)} s`,
          `completing ${median(coldPhases.map((p) => p[1])).toFixed(2)} s`,
          "(fill, fsync, digest check)",
        );
        row(kind, ...cpuCells(coldCpu));
      }

      // 6. the same with the source's files (and curl's) in the page cache.
      if (runs(6)) {
        const warmTimes: number[] = [];
        const warmCpu: Array<[number, number]> = [];
        const curlWarmTimes: number[] = [];
        for (let r = 0; r <= RUNS; r++) {
          const dest = join(WORK, `curl-warm-${r}.img`);
          await warmPageCache(images);
          const seconds = await timed(() => run("curl", ["-s", "-o", dest, `${fileServer.url}/${v1}`]));
          await rm(dest);
          const dataDir = join(WORK, `${kind}-warm-${r}`);
          const target = await startManager({
            dataDir,
            datacenter: "dc-b",
            publicKeyFile: keys.publicKeyFile,
          });
          await warmPageCache(join(WORK, "source"));
          const pulled = await pullVia(target, source, keys, kind, 1, m1.digest, m1.size, manifestDigest(m1));
          await target.kill("SIGTERM");
          await rm(dataDir, { recursive: true });
          if (r === 0) continue; // warm-up
          curlWarmTimes.push(seconds);
          warmTimes.push(pulled.seconds);
          warmCpu.push([pulled.sourceCpu, pulled.targetCpu]);
        }
        const warm = median(warmTimes);
        row(kind, ...versus("6. cold transfer, source cached", warm, "curl", median(curlWarmTimes)));
        row(kind, ...cpuCells(warmCpu));
      }

      // 2 and 3. Deltas from v1, each run on a fresh copy of a target holding v1.
      for (const [label, version, name, manifest] of [
        [`2. delta 1% (${blocks} x 4 KiB)`, 2, v2, m2],
        ["3. 1 MiB insertion at 10%", 3, v3, m3],
      ] as const) {
        if (!runs(version)) continue;
        const ours: Pulled[] = [];
        const theirs: Array<{ seconds: number; wire: number }> = [];
        // What durability costs: rsync --fsync, and the disk copying the base and syncing the copy.
        const theirsSynced: number[] = [];
        const copies: number[] = [];
        for (let r = 0; r < RUNS; r++) {
          const dataDir = targets[r] as string;
          const target = await startManager({
            dataDir,
            datacenter: "dc-b",
            publicKeyFile: keys.publicKeyFile,
          });
          await evictPageCache();
          ours.push(
            await pullVia(
              target,
              source,
              keys,
              kind,
              version,
              manifest.digest,
              manifest.size,
              manifestDigest(manifest),
            ),
          );
          await target.kill("SIGTERM");
          const rsyncDir = join(WORK, `rsync-${r}`);
          await mkdir(rsyncDir, { recursive: true });
          const basis = join(rsyncDir, name);
          await cp(join(images, v1), basis);
          await evictPageCache();
          theirs.push(await rsyncUpdate(rsyncd.url, name, basis));
          // After the comparison above, so that it runs as it always did.
          if (version === 2) {
            await rm(basis);
            await evictPageCache();
            copies.push(await timed(() => cp(join(images, v1), basis).then(() => run("sync", [basis]))));
            await evictPageCache();
            theirsSynced.push((await rsyncUpdate(rsyncd.url, name, basis, ["--fsync"])).seconds);
          }
          await rm(rsyncDir, { recursive: true });
        }
        const wire = median(ours.map((p) => p.wire));
        const rsyncWire = median(theirs.map((p) => p.wire));
        row(
          kind,
          label,
          `${mib(wire)} on the wire (${((wire / SIZE) * 100).toFixed(2)}%)`,
          `rsync ${mib(rsyncWire)} (${((rsyncWire / SIZE) * 100).toFixed(2)}%)`,
          `${(wire / rsyncWire).toFixed(2)}x rsync bytes`,
        );
        if (version === 2) {
          const seconds = median(ours.map((p) => p.seconds));
          const rsyncSeconds = median(theirs.map((p) => p.seconds));
          row(
            kind,
            "",
            `${seconds.toFixed(2)} s`,
            `rsync ${rsyncSeconds.toFixed(2)} s`,
            `${(seconds / rsyncSeconds).toFixed(2)}x rsync time`,
          );
          row(
            kind,
            `disk: base copy+fsync ${median(copies).toFixed(2)} s`,
            `${seconds.toFixed(2)} s`,
            `rsync --fsync ${median(theirsSynced).toFixed(2)} s`,
            `${(seconds / median(theirsSynced)).toFixed(2)}x rsync --fsync time`,
          );
          row(
            kind,
            "",
            `receiving ${median(ours.map((p) => p.receiving)).toFixed(2)} s`,
            `completing ${median(ours.map((p) => p.completing)).toFixed(2)} s`,
            "(fill, fsync, digest check)",
          );
        }
      }
      for (const dataDir of targets) await rm(dataDir, { recursive: true });
    }
  } finally {
    await source.kill("SIGTERM");
    await stopAllManagers();
    fileServer.close();
    receiver.close();
    rsyncd.child.kill();
    if (!values.keep) await rm(WORK, { recursive: true, force: true });
  }
  console.log(
    `load average at end: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}\n`,
  );
  const widths = [0, 1, 2, 3, 4].map((i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  for (const r of rows) console.log(r.map((cell, i) => cell.padEnd(widths[i] as number)).join("  "));
}

await main();
