// Drives a bundled provider the way Terraform does: spawn with the go-plugin environment,
// read the handshake line, connect with mutual TLS and make unary gRPC calls.

import { type ChildProcess, spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { type ClientHttp2Session, connect } from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bundleProvider, REPO_ROOT } from "../../provider/build/bundle.ts";
import { descriptor } from "../../provider/protocol/descriptor.gen.ts";
import { ProtobufCodec, type ProtoObject } from "../../provider/protocol/protobuf.ts";
import { createServerCertificate, type ServerCertificate } from "../../provider/server/certificate.ts";
import { decodeGrpcFrame, encodeGrpcFrame } from "../../provider/server/grpc-server.ts";
import { MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE } from "../../provider/server/handshake.ts";

export const codec = new ProtobufCodec(descriptor);
export const FIXTURE_ENTRY = join(REPO_ROOT, "test/provider/fixtures/test-provider.ts");

export async function bundleFixtureProvider(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "globalvm-provider-bundle-"));
  return bundleProvider({ entry: FIXTURE_ENTRY, outfile: join(dir, "terraform-provider-globalvm") });
}

export interface RunningProvider {
  child: ChildProcess;
  handshake: string;
  port: number;
  serverCertDer: Buffer;
  clientCertificate: ServerCertificate;
  stderr: () => string;
}

/** Terraform's environment for a plugin: cookie, protocol versions, port range, its client cert. */
export function pluginEnvironment(clientCertificate: ServerCertificate): NodeJS.ProcessEnv {
  return {
    ...process.env,
    [MAGIC_COOKIE_KEY]: MAGIC_COOKIE_VALUE,
    PLUGIN_PROTOCOL_VERSIONS: "5,6",
    PLUGIN_MIN_PORT: "10000",
    PLUGIN_MAX_PORT: "25000",
    PLUGIN_CLIENT_CERT: clientCertificate.certPem,
  };
}

export function startProvider(
  executable: string,
  launch: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<RunningProvider> {
  // Terraform's client certificate has the same shape as ours (self-signed, CA, clientAuth).
  const clientCertificate = createServerCertificate();
  const child = spawn(executable, [], {
    env: { ...pluginEnvironment(clientCertificate), ...launch.env },
    stdio: ["ignore", "pipe", "pipe"],
    ...(launch.cwd ? { cwd: launch.cwd } : {}),
  });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  return new Promise((resolve, reject) => {
    let stdout = "";
    child.once("exit", (code) =>
      reject(new Error(`provider exited (${code}) before the handshake: ${stderr}`)),
    );
    child.stdout?.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      const newline = stdout.indexOf("\n");
      if (newline < 0) return;
      const handshake = stdout.slice(0, newline);
      const parts = handshake.split("|");
      const port = Number(parts[3]?.split(":")[1]);
      const serverCertDer = Buffer.from(parts[5] ?? "", "base64");
      resolve({ child, handshake, port, serverCertDer, clientCertificate, stderr: () => stderr });
    });
  });
}

export function derToPem(der: Buffer): string {
  return new X509Certificate(der).toString();
}

export function connectToProvider(
  provider: RunningProvider,
  withClientCert = true,
): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = connect(`https://localhost:${provider.port}`, {
      ca: derToPem(provider.serverCertDer),
      servername: "localhost",
      ...(withClientCert
        ? { key: provider.clientCertificate.keyPem, cert: provider.clientCertificate.certPem }
        : {}),
    });
    session.once("connect", () => resolve(session));
    session.once("error", reject);
  });
}

export interface UnaryResult {
  status: number;
  message: string;
  response?: ProtoObject;
}

export function callUnary(
  session: ClientHttp2Session,
  path: string,
  requestType: string,
  responseType: string,
  request: ProtoObject,
): Promise<UnaryResult> {
  return new Promise((resolve, reject) => {
    const stream = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
    });
    const chunks: Buffer[] = [];
    let status = -1;
    let message = "";
    const readStatus = (headers: Record<string, unknown>) => {
      if (headers["grpc-status"] !== undefined) status = Number(headers["grpc-status"]);
      if (headers["grpc-message"] !== undefined)
        message = decodeURIComponent(String(headers["grpc-message"]));
    };
    stream.on("response", readStatus);
    stream.on("trailers", readStatus);
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("error", reject);
    stream.on("close", () => {
      const body = Buffer.concat(chunks);
      resolve({
        status,
        message,
        ...(body.length ? { response: codec.decode(responseType, decodeGrpcFrame(body)) } : {}),
      });
    });
    stream.end(encodeGrpcFrame(codec.encode(requestType, request)));
  });
}

export function waitForExit(child: ChildProcess, timeoutMs: number): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`process ${child.pid} still running after ${timeoutMs} ms`)),
      timeoutMs,
    );
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

export function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
