// `globalvm up` as a user runs it, and the client commands against it: one process tree with
// the control plane on PGlite and a manager per region; image push with progress, twice (the
// second sends nothing); image ls/show; a VM group followed by `operation watch` until its
// guest is ready; as root, a client group in the other region reaching it over the datacenters'
// namespaces and the overlay between them; Ctrl-C ends everything (exit 0, no QEMU, namespace or
// socket left); a second `up` on the same data dir comes back with the same tokens, images,
// groups and addresses.
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { metadataSocketDir } from "../../regional-manager/network/namespace-host.ts";
import { makeBackedQcow2 } from "../store/hostile-images.ts";
import { type CliResult, runCli } from "../support/cli.ts";
import { ensureGuestImage, killRecordedVms } from "../support/compute.ts";
import { FETCH_WEB, SERVE } from "../support/guest-scripts.ts";
import { loosePermissions } from "../support/permissions.ts";
import { type RunningProcess, startCli } from "../support/processes.ts";

const dataDir = mkdtempSync(join(tmpdir(), "globalvm-cli-up-"));
const randomFile = join(dataDir, "random.raw");
/** A hostile image the test makes with qemu-img: input, like randomFile, not something `up` wrote. */
const hostileFile = join(dataDir, "hostile.qcow2");
const running = new Set<RunningProcess>();

interface UpAnswer {
  endpoint: string;
  token: string;
  admin_token: string;
  regions: string[];
  project: { id: string; name: string };
  datacenters: { region: string; datacenter: string; status: string }[];
  guest_network:
    | { enabled: true; wan: string; hosts: { datacenter: string; netns: string; underlay: string }[] }
    | { enabled: false; reason: string };
}

interface StartedUp {
  process: RunningProcess;
  stdout(): string;
  answer: UpAnswer;
}

/** Starts `globalvm up --json` and waits for its one line of JSON on stdout. */
async function startUp(): Promise<StartedUp> {
  const up = startCli(
    ["up", "--json", "--regions", "eu-west,us-east", "--port", "0", "--data-dir", dataDir],
    {
      GLOBALVM_ADMIN_TOKEN: undefined,
      GLOBALVM_DATA_DIR: undefined,
      DATABASE_URL: undefined,
    },
  );
  running.add(up);
  let stdout = "";
  up.child.stdout?.on("data", (chunk: Buffer) => {
    stdout += chunk;
  });
  const deadline = Date.now() + 150_000;
  while (!stdout.includes("\n")) {
    if (up.child.exitCode !== null) throw new Error(`up exited (${up.child.exitCode}):\n${up.output()}`);
    if (Date.now() > deadline) throw new Error(`up printed no JSON line within 150 s:\n${up.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { process: up, stdout: () => stdout, answer: JSON.parse(stdout.split("\n")[0] as string) };
}

/** SIGINT, as Ctrl-C sends it; resolves with the exit code. */
async function interrupt(up: StartedUp): Promise<number | null> {
  const timeout = new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), 60_000));
  up.process.child.kill("SIGINT");
  const code = await Promise.race([up.process.exited(), timeout]);
  if (code === "timeout") throw new Error(`up did not exit within 60 s of SIGINT:\n${up.process.output()}`);
  running.delete(up.process);
  return code;
}

/** The metadata socket directories of this test's managers that still exist. */
function metadataSocketDirs(): string[] {
  return ["eu-west-a", "us-east-a"]
    .map((datacenter) => metadataSocketDir(join(dataDir, datacenter)))
    .filter((dir) => existsSync(dir));
}

/** The machine's named network namespaces. */
function namespaces(): string[] {
  return execFileSync("ip", ["netns", "list"], { encoding: "utf8" })
    .split("\n")
    .map((line) => line.split(" ")[0] as string)
    .filter(Boolean);
}

/** Every process whose command line names the data dir (the managers' QEMUs do). */
function processesUsing(dir: string): string[] {
  const lines = execFileSync("ps", ["-eo", "pid=,args="], { encoding: "utf8" }).split("\n");
  return lines.filter((line) => line.includes(dir) && !line.includes("ps -eo"));
}

function cli(up: StartedUp, args: string[], timeoutMs = 120_000): Promise<CliResult> {
  return runCli(args, { GLOBALVM_ENDPOINT: up.answer.endpoint, GLOBALVM_TOKEN: up.answer.token }, timeoutMs);
}

function parsed(result: CliResult): any {
  if (result.code !== 0)
    throw new Error(`exit ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  const lines = result.stdout.trim().split("\n");
  expect(lines).toHaveLength(1);
  return JSON.parse(lines[0] as string);
}

async function api(up: StartedUp, path: string, token = up.answer.token, init: RequestInit = {}) {
  const response = await fetch(`${up.answer.endpoint}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    signal: AbortSignal.timeout(30_000),
  });
  return { status: response.status, body: (await response.json()) as any };
}

let first: StartedUp;

beforeAll(async () => {
  // What a default shell gives: `up` must make its files private by itself.
  process.umask(0o022);
  ensureGuestImage();
  writeFileSync(randomFile, randomBytes(4 << 20));
  first = await startUp();
}, 180_000);

afterAll(async () => {
  for (const process of running) {
    await process.stop("SIGTERM");
    await process.stop("SIGKILL");
  }
  killRecordedVms(dataDir);
  // Should a test have failed before Ctrl-C removed them.
  const network = first?.answer.guest_network;
  if (network?.enabled) {
    for (const netns of [network.wan, ...network.hosts.map((h) => h.netns)]) {
      if (namespaces().includes(netns)) execFileSync("ip", ["netns", "del", netns]);
    }
  }
  for (const dir of metadataSocketDirs()) rmSync(dir, { recursive: true, force: true });
  rmSync(dataDir, { recursive: true, force: true });
}, 120_000);

describe("globalvm up", () => {
  it("prints one JSON line with the endpoint, tokens and regions once both managers are up", async () => {
    const { answer } = first;
    expect(answer.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(answer.regions).toEqual(["eu-west", "us-east"]);
    expect(answer.project.name).toBe("default");
    expect(answer.token).not.toBe(answer.admin_token);
    expect(answer.datacenters.map((d) => [d.datacenter, d.status])).toEqual([
      ["eu-west-a", "up"],
      ["us-east-a", "up"],
    ]);

    const health = await fetch(`${answer.endpoint}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: "ok" });
    const regions = await api(first, "/v1/regions");
    expect(regions.status).toBe(200);
    expect(regions.body.items.map((r: any) => [r.name, r.datacenters])).toEqual([
      ["eu-west", ["eu-west-a"]],
      ["us-east", ["us-east-a"]],
    ]);
    const datacenters = await api(first, "/v1/datacenters");
    expect(datacenters.body.items.map((d: any) => [d.name, d.status])).toEqual([
      ["eu-west-a", "up"],
      ["us-east-a", "up"],
    ]);
    // The secrets that make a restart resume are readable by their owner only.
    expect(statSync(join(dataDir, "secrets.json")).mode & 0o777).toBe(0o600);
  });

  it("as root, gives each datacenter a host of its own: a network namespace, joined to the others by a WAN", () => {
    // CI runs as root; elsewhere up says what it lacks (up-isolated.test.ts runs it without).
    expect(process.getuid?.()).toBe(0);
    const network = first.answer.guest_network;
    if (!network.enabled) throw new Error(`guest networking is off: ${network.reason}`);
    expect(network.hosts.map((h) => h.datacenter)).toEqual(["eu-west-a", "us-east-a"]);
    expect(namespaces()).toEqual(expect.arrayContaining([network.wan, ...network.hosts.map((h) => h.netns)]));
    // Each host reaches the other on the WAN; the machine's own interfaces are not involved.
    const [a, b] = network.hosts;
    execFileSync("ip", [
      "netns",
      "exec",
      a?.netns as string,
      // busybox's: Debian's ping is not always installed.
      "busybox",
      "ping",
      "-c",
      "1",
      "-W",
      "2",
      b?.underlay as string,
    ]);
  });

  it("env prints the lines that point another terminal at this stack", async () => {
    const env = await runCli(["env", "--data-dir", dataDir], {});
    expect(env.code).toBe(0);
    expect(env.stdout).toContain(`export GLOBALVM_ENDPOINT='${first.answer.endpoint}'`);
    expect(env.stdout).toContain(`export GLOBALVM_TOKEN='${first.answer.token}'`);
    expect(statSync(join(dataDir, "env.sh")).mode & 0o777).toBe(0o600);
    const missing = await runCli(["env", "--data-dir", join(dataDir, "nothing-here")], {});
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("start one with 'npx globalvm up'");
  });

  it("regions shows both regions up, as a table and as JSON", async () => {
    const table = await cli(first, ["regions"]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^eu-west\s+up\s+eu-west-a\s+up\s+http/m);
    expect(table.stdout).toMatch(/^us-east\s+up\s+us-east-a\s+up\s+http/m);
    const json = parsed(await cli(first, ["regions", "--json"]));
    expect(json.map((r: any) => [r.name, r.status])).toEqual([
      ["eu-west", "up"],
      ["us-east", "up"],
    ]);
  });

  it("a second up on the same data dir refuses to start and says why", async () => {
    const second = await runCli(["up", "--json", "--port", "0", "--data-dir", dataDir], {
      GLOBALVM_ADMIN_TOKEN: undefined,
    });
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`is in use by process ${first.process.child.pid}`);
    expect(second.stdout).toBe("");
  });

  it("image push shows progress and the image; pushing it again skips every chunk", async () => {
    const digest = `sha256:${createHash("sha256").update(readFileSync(randomFile)).digest("hex")}`;
    const pushed = await cli(first, [
      "image",
      "push",
      randomFile,
      "--name",
      "random",
      "--region",
      "eu-west",
      "--json",
    ]);
    const image = parsed(pushed);
    expect(image).toMatchObject({ name: "random", format: "raw", version: 1, digest, size: 4 << 20 });
    expect(image.upload.chunks_sent).toBe(image.upload.chunks_total);
    expect(image.upload.chunks_skipped).toBe(0);
    expect(image.upload.bytes_sent).toBe(4 << 20);
    // stderr is not a terminal here: plain progress lines with bytes, rate, ETA and skipped chunks.
    expect(pushed.stderr).toContain("as random version 1 to eu-west-a; chunks it already holds are skipped");
    expect(pushed.stderr).toMatch(
      /^sending\s+100%\s+4\.0 MiB\/4\.0 MiB\s+\S+ \S+\/s\s+ETA 0s\s+0 chunks skipped/m,
    );

    const again = await cli(first, ["image", "push", randomFile, "--name", "random", "--region", "eu-west"]);
    expect(again.code).toBe(0);
    const total = image.upload.chunks_total;
    expect(again.stdout).toContain(
      `sent 0 of ${total} chunks (0 B), ${total} skipped because eu-west-a already had them`,
    );
    expect(again.stdout).toMatch(/^version:\s+2$/m);
    expect(again.stdout).toContain(`digest:  ${digest}`);
    expect(again.stderr).toMatch(new RegExp(`^sending\\s+100%\\s+0 B/0 B .* ${total} chunks skipped$`, "m"));
  });

  it("image ls and image show list and describe it", async () => {
    const list = parsed(await cli(first, ["image", "ls", "--json"]));
    expect(list.map((i: any) => [i.name, i.version, i.state])).toEqual([["random", 2, "available"]]);
    const byName = parsed(await cli(first, ["image", "show", "random", "--json"]));
    const byId = parsed(await cli(first, ["image", "show", byName.id, "--json"]));
    expect(byId).toEqual(byName);
    expect(byName.replicas.map((r: any) => [r.datacenter, r.version, r.state])).toEqual([
      ["eu-west-a", 1, "available"],
      ["eu-west-a", 2, "available"],
    ]);
    const table = await cli(first, ["image", "ls"]);
    expect(table.stdout).toMatch(/^random\s+img_\S+\s+raw\s+2\s+4\.0 MiB\s+available/m);
    const missing = await cli(first, ["image", "show", "nope"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("no image nope in this project");
  });

  it("image push of a qcow2 naming a backing file fails with the reason; the image stays awaiting upload", async () => {
    makeBackedQcow2(hostileFile, "/etc/passwd");
    const pushed = await cli(first, [
      "image",
      "push",
      hostileFile,
      "--name",
      "hostile",
      "--region",
      "eu-west",
    ]);
    expect(pushed.code).toBe(1);
    expect(pushed.stderr).toContain("image_format_refused (422): image img_");
    expect(pushed.stderr).toContain("is refused: qcow2 image names a backing file '/etc/passwd'");
    expect(pushed.stderr).toContain("the image's content was refused");
    const image = parsed(await cli(first, ["image", "show", "hostile", "--json"]));
    expect(image.state).toBe("awaiting-upload");
    expect(image.replicas).toEqual([]);
  });

  it("operation watch follows a VM group's creation until its guest is ready, exit 0", async () => {
    const guest = parsed(
      await cli(first, [
        "image",
        "push",
        ensureGuestImage(),
        "--name",
        "guest",
        "--region",
        "eu-west",
        "--json",
      ]),
    );
    expect(guest.format).toBe("qcow2");
    const created = await api(first, "/v1/vm-groups", first.answer.token, {
      method: "POST",
      body: JSON.stringify({
        name: "web",
        image: guest.id,
        region: "us-east",
        size: 1,
        machine: { vcpus: 1, memory_mb: 256 },
        metadata: { "startup-script": SERVE },
      }),
    });
    expect(created.status).toBe(202);
    const operationId = created.body.id as string;
    const watched = await cli(first, ["operation", "watch", operationId], 300_000);
    if (watched.code !== 0) throw new Error(`${watched.stderr}\n${first.process.output().slice(-4000)}`);
    expect(watched.stdout).toContain(`operation ${operationId} succeeded`);
    expect(watched.stderr).toMatch(/create-vm-group (running|succeeded)/);

    const group = parsed(await cli(first, ["vm-group", "show", "web", "--json"]));
    expect(group).toMatchObject({ name: "web", region: "us-east", datacenter: "us-east-a" });
    expect(group.instances.map((i: any) => i.state)).toEqual(["ready"]);
    const list = await cli(first, ["vm-group", "ls"]);
    expect(list.stdout).toMatch(/^web\s+vmg_\S+\s+us-east\s+us-east-a\s+1\s+ready/m);
    expect(processesUsing(dataDir).some((line) => line.includes("qemu-system"))).toBe(true);
  }, 330_000);

  it("a client group in the other region is handed web-0's address and fetches from it over the WAN", async () => {
    const [web] = parsed(await cli(first, ["vm-group", "show", "web", "--json"])).instances;
    // Its private address, given by the catalog and reported by the datacenter that attached it.
    expect(web.network_ip).toMatch(/^10\.128\.\d+\.\d+$/);
    expect(web.address).toBe(web.network_ip);
    const guest = parsed(await cli(first, ["image", "show", "guest", "--json"]));
    const webGroup = parsed(await cli(first, ["vm-group", "show", "web", "--json"]));
    const created = await api(first, "/v1/vm-groups", first.answer.token, {
      method: "POST",
      body: JSON.stringify({
        name: "client",
        image: guest.id,
        region: "eu-west",
        size: 1,
        machine: { vcpus: 1, memory_mb: 256 },
        metadata: { "startup-script": FETCH_WEB },
        metadata_from: { web: { vm_group: webGroup.id, instance: 0, attribute: "address" } },
      }),
    });
    expect(created.status).toBe(202);
    const watched = await cli(first, ["operation", "watch", created.body.id], 300_000);
    if (watched.code !== 0) throw new Error(`${watched.stderr}\n${first.process.output().slice(-4000)}`);
    let attributes: Record<string, string> = {};
    const deadline = Date.now() + 120_000;
    while (attributes["net/tcp"] === undefined && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      attributes = parsed(await cli(first, ["vm-group", "show", "client", "--json"])).instances[0]
        .guest_attributes;
    }
    expect(attributes["net/peer"]).toBe(web.address);
    expect(attributes["net/tcp"]).toBe("ok");
    // vm-group show prints what the guest published.
    const shown = await cli(first, ["vm-group", "show", "client"]);
    expect(shown.stdout).toMatch(/^guest attributes:$/m);
    expect(shown.stdout).toMatch(/\snet\/tcp\s+ok$/m);
  }, 450_000);

  it("operation watch exits 1 when the operation ends cancelled", async () => {
    // A region without a manager: the group's operation waits there until it is cancelled.
    const region = await api(first, "/v1/regions", first.answer.admin_token, {
      method: "POST",
      body: JSON.stringify({ name: "ap-south" }),
    });
    expect(region.status).toBe(201);
    const guest = parsed(await cli(first, ["image", "show", "guest", "--json"]));
    const created = await api(first, "/v1/vm-groups", first.answer.token, {
      method: "POST",
      body: JSON.stringify({
        name: "nowhere",
        image: guest.id,
        region: "ap-south",
        size: 1,
        machine: { vcpus: 1, memory_mb: 256 },
      }),
    });
    expect(created.status).toBe(202);
    const operationId = created.body.id as string;
    const watching = cli(first, ["operation", "watch", operationId, "--json"], 120_000);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const cancel = await api(first, `/v1/operations/${operationId}/cancel`, first.answer.token, {
      method: "POST",
    });
    expect(cancel.status).toBe(200);
    const watched = await watching;
    expect(watched.code).toBe(1);
    expect(JSON.parse(watched.stdout)).toMatchObject({ id: operationId, state: "cancelled", done: true });
    expect(watched.stderr).toContain(`operation ${operationId} cancelled`);
  }, 150_000);

  it("Ctrl-C stops everything with exit 0 and leaves no process, namespace or socket behind", async () => {
    const code = await interrupt(first);
    expect(code).toBe(0);
    expect(processesUsing(dataDir)).toEqual([]);
    const network = first.answer.guest_network;
    if (network.enabled) {
      const ours = [network.wan, ...network.hosts.map((h) => h.netns)];
      expect(namespaces().filter((name) => ours.includes(name))).toEqual([]);
    }
    expect(metadataSocketDirs()).toEqual([]);
    // Exactly the one JSON line, nothing else on stdout.
    expect(first.stdout().trim().split("\n")).toHaveLength(1);
    // After a catalog, two stores and a guest wrote there: nothing other users may read.
    expect(loosePermissions(dataDir, [randomFile, hostileFile])).toEqual([]);
  }, 90_000);

  it("up again on the same data dir resumes: same tokens, the image, the group and its guest", async () => {
    const second = await startUp();
    try {
      expect(second.answer.token).toBe(first.answer.token);
      expect(second.answer.admin_token).toBe(first.answer.admin_token);
      expect(second.answer.project).toEqual(first.answer.project);
      const image = parsed(await cli(second, ["image", "show", "random", "--json"]));
      expect(image).toMatchObject({ version: 2, state: "available", size: 4 << 20 });
      const groups = parsed(await cli(second, ["vm-group", "ls", "--json"]));
      expect(groups.map((g: any) => g.name)).toContain("web");
      // The guest Ctrl-C stopped boots again and reports ready.
      const deadline = Date.now() + 180_000;
      let states: string[] = [];
      while (Date.now() < deadline) {
        const group = parsed(await cli(second, ["vm-group", "show", "web", "--json"]));
        states = group.instances.map((i: any) => i.state);
        if (states.every((state) => state === "ready")) break;
        await new Promise((resolve) => setTimeout(resolve, 2_000));
      }
      expect(states).toEqual(["ready"]);
      // The same address as before the restart.
      const [web] = parsed(await cli(second, ["vm-group", "show", "web", "--json"])).instances;
      expect(web.address).toMatch(/^10\.128\./);
      expect(web.address).toBe(web.network_ip);
    } finally {
      expect(await interrupt(second)).toBe(0);
    }
    expect(processesUsing(dataDir)).toEqual([]);
  }, 420_000);
});
