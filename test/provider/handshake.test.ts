import { spawn, spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { decodeMsgpack } from "../../provider/cty/msgpack.ts";
import { blockType } from "../../provider/framework/schema.ts";
import {
  checkPluginEnvironment,
  handshakeLine,
  MAGIC_COOKIE_VALUE,
} from "../../provider/server/handshake.ts";
import { testFileResource } from "./fixtures/test-file-resource.ts";
import {
  bundleFixtureProvider,
  callUnary,
  connectToProvider,
  processIsAlive,
  type RunningProvider,
  startProvider as startLaunch,
  waitForExit,
} from "./helpers.ts";

describe("handshake line", () => {
  it("has go-plugin's six fields and an unpadded standard-base64 certificate", () => {
    // 2 bytes of DER → "AAE=" padded; Go's RawStdEncoding rejects the "=".
    expect(handshakeLine({ host: "127.0.0.1", port: 41234 }, Uint8Array.of(0, 1))).toBe(
      "1|6|tcp|127.0.0.1:41234|grpc|AAE\n",
    );
  });

  it("accepts protocol versions in either order and refuses a missing cookie", () => {
    const base = { TF_PLUGIN_MAGIC_COOKIE: MAGIC_COOKIE_VALUE, PLUGIN_CLIENT_CERT: "pem" };
    expect(checkPluginEnvironment({ ...base, PLUGIN_PROTOCOL_VERSIONS: "6,5" }).ok).toBe(true);
    expect(checkPluginEnvironment({ ...base, PLUGIN_PROTOCOL_VERSIONS: "5" }).ok).toBe(false);
    const noCookie = checkPluginEnvironment({ PLUGIN_PROTOCOL_VERSIONS: "6", PLUGIN_CLIENT_CERT: "pem" });
    expect(noCookie.ok).toBe(false);
    expect(noCookie.ok ? "" : noCookie.message).toContain("This binary is a plugin");
  });
});

// Each launch is served by the provider daemon unless switched off (daemon.test.ts); what
// Terraform sees of the executable is the same either way.
const runtimeDir = mkdtempSync(join(tmpdir(), "globalvm-handshake-run-"));
describe.each([
  ["through the provider daemon", { XDG_RUNTIME_DIR: runtimeDir }],
  ["served in its own process", { GLOBALVM_PROVIDER_DAEMON: "0" }],
])("the bundled provider process, %s", (_mode, modeEnv: NodeJS.ProcessEnv) => {
  let executable = "";
  let provider: RunningProvider | undefined;
  const startProvider = (path: string) => startLaunch(path, { env: modeEnv });

  beforeAll(async () => {
    executable = await bundleFixtureProvider();
  });

  afterAll(() => {
    rmSync(dirname(executable), { recursive: true, force: true });
    // The daemon exits on its own when idle; this one has served its launches.
    spawnSync("pkill", ["-f", "--", `--globalvm-provider-daemon=${runtimeDir}/`]);
    rmSync(runtimeDir, { recursive: true, force: true });
  });

  afterEach(async () => {
    if (provider?.child.exitCode === null && provider.child.signalCode === null) {
      provider.child.kill("SIGKILL");
      await waitForExit(provider.child, 5000);
    }
    provider = undefined;
  });

  it("prints a handshake line whose certificate is the TLS server's, valid for localhost", async () => {
    provider = await startProvider(executable);
    expect(provider.handshake).toMatch(/^1\|6\|tcp\|127\.0\.0\.1:\d+\|grpc\|[A-Za-z0-9+/]+$/);
    const certificate = new X509Certificate(provider.serverCertDer);
    expect(certificate.checkHost("localhost")).toBe("localhost");
    expect(certificate.ca).toBe(true);

    const session = await connectToProvider(provider);
    const peer = (session.socket as import("node:tls").TLSSocket).getPeerX509Certificate();
    expect(peer?.raw.equals(provider.serverCertDer)).toBe(true);
    const schema = await callUnary(
      session,
      "/tfplugin6.Provider/GetProviderSchema",
      "tfplugin6.GetProviderSchema.Request",
      "tfplugin6.GetProviderSchema.Response",
      {},
    );
    expect(schema.status).toBe(0);
    const resources = schema.response?.resource_schemas as Record<
      string,
      { block: { attributes: { name: string }[] } }
    >;
    expect(Object.keys(resources)).toEqual(["globalvm_test_file"]);
    expect(resources.globalvm_test_file?.block.attributes.map((attribute) => attribute.name)).toContain(
      "path",
    );
    expect(schema.response?.server_capabilities).toMatchObject({
      plan_destroy: true,
      get_provider_schema_optional: true,
    });
    session.close();
  });

  it("refuses a TLS client without Terraform's client certificate", async () => {
    provider = await startProvider(executable);
    const attempt = connectToProvider(provider, false).then(async (session) => {
      // TLS 1.3 reports the rejected client certificate on first use rather than at connect.
      const result = await callUnary(
        session,
        "/tfplugin6.Provider/GetMetadata",
        "tfplugin6.GetMetadata.Request",
        "tfplugin6.GetMetadata.Response",
        {},
      );
      session.close();
      return result;
    });
    await expect(attempt).rejects.toThrow();
  });

  it("answers unknown methods with UNIMPLEMENTED, ignores SIGINT and exits on GRPCController.Shutdown", async () => {
    provider = await startProvider(executable);
    const session = await connectToProvider(provider);
    const stdio = await callUnary(
      session,
      "/plugin.GRPCStdio/StreamStdio",
      "plugin.Empty",
      "plugin.Empty",
      {},
    );
    expect(stdio.status).toBe(12);

    provider.child.kill("SIGINT");
    await sleep(200);
    const validate = await callUnary(
      session,
      "/tfplugin6.Provider/ValidateResourceConfig",
      "tfplugin6.ValidateResourceConfig.Request",
      "tfplugin6.ValidateResourceConfig.Response",
      { type_name: "globalvm_nope", config: { msgpack: Uint8Array.of(0xc0) } },
    );
    expect(validate.status).toBe(0);
    expect(validate.response?.diagnostics).toMatchObject([
      { severity: "ERROR", summary: expect.stringContaining("globalvm_nope") },
    ]);

    const shutdown = await callUnary(
      session,
      "/plugin.GRPCController/Shutdown",
      "plugin.Empty",
      "plugin.Empty",
      {},
    );
    expect(shutdown.status).toBe(0);
    expect(await waitForExit(provider.child, 2000)).toBe(0);
    session.close();
  });

  it("imports through the protocol: ImportResourceState returns every attribute, unset ones null", async () => {
    provider = await startProvider(executable);
    const session = await connectToProvider(provider);
    const imported = await callUnary(
      session,
      "/tfplugin6.Provider/ImportResourceState",
      "tfplugin6.ImportResourceState.Request",
      "tfplugin6.ImportResourceState.Response",
      { type_name: "globalvm_test_file", id: "/tmp/x.json" },
    );
    const [resource] = (imported.response?.imported_resources ?? []) as {
      type_name: string;
      state: { msgpack: Uint8Array };
    }[];
    expect(resource?.type_name).toBe("globalvm_test_file");
    const state = decodeMsgpack(
      blockType(testFileResource.schema),
      resource?.state.msgpack ?? new Uint8Array(),
    );
    expect(state).toMatchObject({ id: "/tmp/x.json", path: "/tmp/x.json", content: null, section: [] });
    session.close();
  });

  it("exits when its parent process dies", async () => {
    // sh starts the provider in the background and exits; the provider is re-parented.
    const { createServerCertificate } = await import("../../provider/server/certificate.ts");
    const { pluginEnvironment } = await import("./helpers.ts");
    const shell = spawn("sh", ["-c", `"$0" > /dev/null 2>&1 & echo $!; sleep 0.5`, executable], {
      env: { ...pluginEnvironment(createServerCertificate()), ...modeEnv },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let output = "";
    shell.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    await waitForExit(shell, 5000);
    const pid = Number(output.trim());
    expect(pid).toBeGreaterThan(0);
    const deadline = Date.now() + 4000;
    while (processIsAlive(pid) && Date.now() < deadline) await sleep(100);
    expect(processIsAlive(pid)).toBe(false);
  });
});
