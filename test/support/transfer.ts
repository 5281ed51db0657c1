import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { type CryptoKey, exportJWK, generateKeyPair } from "jose";
import { signTransferToken, type TransferAction } from "../../common/tokens/transfer-token.ts";

export const STANDALONE = join(import.meta.dirname, "../../regional-manager/transfer/standalone.ts");

export async function temporaryDir(prefix: string): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `globalvm-${prefix}-`));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

export const TEST_PROJECT = "prj_test";

export interface TestKeys {
  privateKey: CryptoKey;
  publicKeyFile: string;
  /** A transfer token; an upload token names `projectId` (the same test project by default). */
  token(
    imageId: string,
    version: number,
    datacenter: string,
    action: TransferAction,
    projectId?: string,
  ): Promise<string>;
}

export async function createTestKeys(dir: string): Promise<TestKeys> {
  const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
  const jwk = { ...(await exportJWK(publicKey)), alg: "EdDSA" };
  const publicKeyFile = join(dir, "transfer-key.jwk.json");
  await writeFile(publicKeyFile, JSON.stringify(jwk));
  return {
    privateKey,
    publicKeyFile,
    token: (imageId, version, datacenter, action, projectId = TEST_PROJECT) =>
      signTransferToken(privateKey, {
        imageId,
        version,
        datacenter,
        action,
        ...(action === "upload" ? { projectId } : {}),
      }),
  };
}

/** A regional manager's transfer service running as a real child process. */
export interface ManagerProcess {
  url: string;
  port: number;
  child: ChildProcess;
  lines: string[];
  /** Resolves with the first stdout line (past or future) matching `pattern`. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

const running = new Set<ManagerProcess>();

/** Kills every manager a test started and did not stop (a failed assertion skips its kill). */
export async function stopAllManagers(): Promise<void> {
  await Promise.all([...running].map((manager) => manager.kill()));
}

export async function startManager(options: {
  dataDir: string;
  datacenter: string;
  publicKeyFile: string;
  port?: number;
  /** More flags for standalone.ts (the manager's limits). */
  args?: string[];
  /** More environment variables (GLOBALVM_HTTP_* limits). */
  env?: Record<string, string>;
}): Promise<ManagerProcess> {
  const child = spawn(
    process.execPath,
    [
      ...(process.env.GLOBALVM_MANAGER_NODE_ARGS?.split(" ").filter(Boolean) ?? []),
      STANDALONE,
      "--data-dir",
      options.dataDir,
      "--datacenter",
      options.datacenter,
      "--public-key-file",
      options.publicKeyFile,
      "--port",
      String(options.port ?? 0),
      ...(options.args ?? []),
    ],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...options.env } },
  );
  const lines: string[] = [];
  const waiters: Array<{ pattern: RegExp; resolve: (line: string) => void }> = [];
  let stderr = "";
  child.stderr?.on("data", (data: Buffer) => {
    stderr += data.toString();
  });
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
    lines.push(line);
    for (const waiter of [...waiters]) {
      if (waiter.pattern.test(line)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(line);
      }
    }
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const waitForLine = (pattern: RegExp, timeoutMs = 20_000) =>
    new Promise<string>((resolve, reject) => {
      const found = lines.find((line) => pattern.test(line));
      if (found) return resolve(found);
      const timer = setTimeout(
        () => reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms; stderr: ${stderr}`)),
        timeoutMs,
      );
      waiters.push({
        pattern,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      });
      exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`manager exited before printing ${pattern}; stderr: ${stderr}`));
      });
    });
  const manager: ManagerProcess = {
    url: "",
    port: 0,
    child,
    lines,
    waitForLine,
    async kill(signal = "SIGKILL") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
      running.delete(manager);
    },
  };
  running.add(manager);
  const ready = await waitForLine(/^listening \d+$/);
  manager.port = Number(ready.split(" ")[1]);
  manager.url = `http://127.0.0.1:${manager.port}`;
  return manager;
}

/** Deterministic pseudo-random bytes (xorshift32), so tests and the benchmark are reproducible. */
export function seededBytes(length: number, seed: number): Buffer {
  const out = Buffer.allocUnsafeSlow(length);
  const words = new Uint32Array(out.buffer, out.byteOffset, Math.floor(length / 4));
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  for (let i = words.length * 4; i < length; i++) out[i] = i & 0xff;
  return out;
}
