// The provider daemon, driven the way Terraform drives the executable: every launch is
// served, each with its own environment and working directory, through one daemon per build
// in a private directory, and each launch's session ends with it.
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { connect as connectTcp } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { decodeMsgpack, encodeMsgpack } from "../../provider/cty/msgpack.ts";
import { blockType } from "../../provider/framework/schema.ts";
import { testFileDataSource } from "./fixtures/test-file-resource.ts";
import { testProvider } from "./fixtures/test-provider.ts";
import {
  bundleFixtureProvider,
  callUnary,
  connectToProvider,
  processIsAlive,
  type RunningProvider,
  startProvider,
  waitForExit,
} from "./helpers.ts";

let executable = "";
const scratch: string[] = [];
const launched: RunningProvider[] = [];

function scratchDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  scratch.push(dir);
  return dir;
}

/** Daemons whose socket lives under `runtimeDir`, by pid. */
function daemonsUnder(runtimeDir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
    } catch {
      continue;
    }
    if (argv.some((argument) => argument.startsWith(`--globalvm-provider-daemon=${runtimeDir}/`)))
      pids.push(Number(entry));
  }
  return pids;
}

async function launch(runtimeDir: string, extra: { env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
  const provider = await startProvider(executable, {
    env: { XDG_RUNTIME_DIR: runtimeDir, GLOBALVM_PROVIDER_DAEMON: "1", ...extra.env },
    ...(extra.cwd ? { cwd: extra.cwd } : {}),
  });
  launched.push(provider);
  return provider;
}

/** Configures the provider (label unset) and reads the fixture's data source at `path`. */
async function readThrough(provider: RunningProvider, path: string) {
  const session = await connectToProvider(provider);
  try {
    const configured = await callUnary(
      session,
      "/tfplugin6.Provider/ConfigureProvider",
      "tfplugin6.ConfigureProvider.Request",
      "tfplugin6.ConfigureProvider.Response",
      {
        terraform_version: "1.11.4",
        config: { msgpack: encodeMsgpack(blockType(testProvider.schema), { label: null }) },
      },
    );
    expect(configured.status).toBe(0);
    const type = blockType(testFileDataSource.schema);
    const read = await callUnary(
      session,
      "/tfplugin6.Provider/ReadDataSource",
      "tfplugin6.ReadDataSource.Request",
      "tfplugin6.ReadDataSource.Response",
      {
        type_name: "globalvm_test_file",
        config: { msgpack: encodeMsgpack(type, { path, content: null, size: null, label: null }) },
      },
    );
    expect(read.status).toBe(0);
    const state = read.response?.state as { msgpack: Uint8Array } | undefined;
    return decodeMsgpack(type, state?.msgpack ?? new Uint8Array()) as { content: string; label: string };
  } finally {
    session.close();
  }
}

async function shutdown(provider: RunningProvider) {
  const session = await connectToProvider(provider);
  const answer = await callUnary(
    session,
    "/plugin.GRPCController/Shutdown",
    "plugin.Empty",
    "plugin.Empty",
    {},
  );
  session.close();
  expect(answer.status).toBe(0);
  expect(await waitForExit(provider.child, 3000)).toBe(0);
}

/** Whether anything still accepts TCP connections on the session's port. */
function portAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connectTcp(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

async function eventually(check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await sleep(50);
  }
  return check();
}

beforeAll(async () => {
  executable = await bundleFixtureProvider();
});

afterEach(async () => {
  for (const provider of launched.splice(0)) {
    if (provider.child.exitCode === null && provider.child.signalCode === null) {
      provider.child.kill("SIGKILL");
      await waitForExit(provider.child, 5000);
    }
  }
});

afterAll(() => {
  for (const dir of scratch) {
    for (const pid of daemonsUnder(dir)) process.kill(pid, "SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
  rmSync(dirname(executable), { recursive: true, force: true });
});

describe("the provider daemon", () => {
  it("serves concurrent launches from one daemon, each with its own environment and working directory", async () => {
    const runtimeDir = scratchDir("globalvm-daemon-run-");
    const workDirs = ["a", "b"].map((name) => {
      const dir = scratchDir(`globalvm-daemon-work-${name}-`);
      writeFileSync(join(dir, "file.json"), JSON.stringify({ content: `written in ${name}` }));
      return dir;
    });
    const [a, b] = await Promise.all(
      workDirs.map((cwd, index) =>
        launch(runtimeDir, { cwd, env: { GLOBALVM_TEST_LABEL: `label-${index}` } }),
      ),
    );
    // Both may have started one; the one that lost the pid file leaves.
    expect(await eventually(() => daemonsUnder(runtimeDir).length === 1, 5000)).toBe(true);
    const [fromA, fromB] = await Promise.all([
      readThrough(a as RunningProvider, "file.json"),
      readThrough(b as RunningProvider, "file.json"),
    ]);
    expect(fromA).toMatchObject({ content: "written in a", label: "label-0" });
    expect(fromB).toMatchObject({ content: "written in b", label: "label-1" });

    // Only this user may reach the daemon.
    const dir = join(runtimeDir, "globalvm-provider");
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const [socket] = readdirSync(dir).filter((name) => name.endsWith(".sock"));
    expect(statSync(join(dir, String(socket))).mode & 0o777).toBe(0o600);
  });

  it("ends a session on Shutdown and keeps serving the next launch from the same daemon", async () => {
    const runtimeDir = scratchDir("globalvm-daemon-run-");
    const first = await launch(runtimeDir);
    const [daemon] = daemonsUnder(runtimeDir);
    await shutdown(first);
    expect(await eventually(async () => !(await portAccepts(first.port)), 2000)).toBe(true);

    const second = await launch(runtimeDir);
    expect(daemonsUnder(runtimeDir)).toEqual([daemon]);
    expect(second.port).not.toBe(first.port);
    await shutdown(second);
  });

  it("closes a session whose launch Terraform killed", async () => {
    const runtimeDir = scratchDir("globalvm-daemon-run-");
    const provider = await launch(runtimeDir);
    expect(await portAccepts(provider.port)).toBe(true);
    provider.child.kill("SIGKILL");
    await waitForExit(provider.child, 3000);
    expect(await eventually(async () => !(await portAccepts(provider.port)), 2000)).toBe(true);
    expect(daemonsUnder(runtimeDir)).toHaveLength(1);
  });

  it("replaces a daemon that died, and exits when idle", async () => {
    const runtimeDir = scratchDir("globalvm-daemon-run-");
    const env = { GLOBALVM_PROVIDER_DAEMON_IDLE_SECONDS: "1" };
    await shutdown(await launch(runtimeDir, { env }));
    const [first] = daemonsUnder(runtimeDir);
    process.kill(Number(first), "SIGKILL");
    await eventually(() => !processIsAlive(Number(first)), 2000);

    // Its socket file is left behind: the next launch starts another daemon all the same.
    const provider = await launch(runtimeDir, { env });
    const [second] = daemonsUnder(runtimeDir);
    expect(second).toBeDefined();
    expect(second).not.toBe(first);
    await shutdown(provider);
    expect(await eventually(() => !processIsAlive(Number(second)), 4000)).toBe(true);
  });

  it("serves in the launched process when switched off or when the directory is not private", async () => {
    const off = scratchDir("globalvm-daemon-run-");
    const cwd = scratchDir("globalvm-daemon-work-");
    writeFileSync(join(cwd, "file.json"), JSON.stringify({ content: "here" }));
    const provider = await launch(off, {
      cwd,
      env: { GLOBALVM_PROVIDER_DAEMON: "0", GLOBALVM_TEST_LABEL: "own" },
    });
    expect(await readThrough(provider, "file.json")).toMatchObject({ content: "here", label: "own" });
    expect(daemonsUnder(off)).toEqual([]);
    await shutdown(provider);

    const open = scratchDir("globalvm-daemon-run-");
    mkdirSync(join(open, "globalvm-provider"), { mode: 0o755 });
    chmodSync(join(open, "globalvm-provider"), 0o755);
    await shutdown(await launch(open));
    expect(daemonsUnder(open)).toEqual([]);
    expect(readdirSync(join(open, "globalvm-provider"))).toEqual([]);
  });
});
