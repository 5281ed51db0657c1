// One provider session: what one launch by Terraform gets. It checks the go-plugin
// environment of that launch, serves tfplugin6 over mutual TLS on loopback to the client
// certificate Terraform put in that environment, hands back the handshake line, and ends on
// GRPCController.Shutdown. A session is the same whether it runs in the process Terraform
// started (serve.ts) or in the provider daemon for that process (daemon.ts): everything it
// takes from its launch comes in `launch`, never from this process's own env or cwd.

import type { Http2Session } from "node:http2";
import type { LaunchEnvironment, ProviderDefinition } from "../framework/definitions.ts";
import { createLogger } from "../framework/logger.ts";
import { createProviderService } from "../framework/provider-service.ts";
import { descriptor } from "../protocol/descriptor.gen.ts";
import { ProtobufCodec } from "../protocol/protobuf.ts";
import { createServerCertificate } from "./certificate.ts";
import { createGrpcServer, type UnaryMethod } from "./grpc-server.ts";
import { checkPluginEnvironment, handshakeLine } from "./handshake.ts";

export interface SessionIo {
  /** The launch's stdout: only the handshake line goes there. */
  stdout(text: string): void;
  /** The launch's stderr: hclog lines, which go-plugin forwards into Terraform's log. */
  stderr(text: string): void;
  /** The session is over (Shutdown, or the environment was refused): exit with this code. */
  end(code: number): void;
}

export interface ProviderSession {
  /** Ends the session from outside (its launch is gone): cancels calls in flight, closes the server. */
  close(): void;
}

const codec = new ProtobufCodec(descriptor);

export function startSession<P>(
  provider: ProviderDefinition<P>,
  launch: LaunchEnvironment,
  io: SessionIo,
): ProviderSession {
  const check = checkPluginEnvironment(launch.env);
  if (!check.ok) {
    io.stderr(check.message);
    io.end(1);
    return { close() {} };
  }
  const log = createLogger(`provider.terraform-provider-${provider.typeName}`, (line) =>
    io.stderr(`${line}\n`),
  );
  const certificate = createServerCertificate();
  const service = createProviderService(provider, log, launch);
  const methods = new Map<string, UnaryMethod>();
  for (const method of descriptor.services["tfplugin6.Provider"] ?? []) {
    const handle = (service as Partial<Record<string, UnaryMethod["handle"]>>)[method.name];
    if (handle) methods.set(`/tfplugin6.Provider/${method.name}`, { ...method, handle });
  }

  const connections = new Set<Http2Session>();
  let ended = false;
  /** `graceful`: let what was answered reach Terraform (Shutdown's reply); else cut (launch gone). */
  const stop = (graceful: boolean) => {
    if (ended) return;
    ended = true;
    // Calls still running (an apply cut short) see their signal aborted, as on StopProvider.
    void service.StopProvider({}, { signal: AbortSignal.abort() });
    server.close();
    for (const connection of connections) {
      if (graceful) connection.close();
      else connection.destroy();
    }
  };
  const end = () => {
    if (ended) return;
    log.debug("shutdown: ending the session");
    stop(true);
    // Exiting at once could cut Shutdown's reply short: end once Terraform's connections
    // have closed (or after 200 ms; go-plugin SIGKILLs after 2 s).
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      io.end(0);
    };
    setTimeout(finish, 200).unref();
    const closing = [...connections].map(
      (connection) => new Promise((resolve) => connection.once("close", resolve)),
    );
    void Promise.all(closing).then(finish);
  };
  methods.set("/plugin.GRPCController/Shutdown", {
    requestType: "plugin.Empty",
    responseType: "plugin.Empty",
    handle: async () => {
      // Should the stream never report closing, end anyway: go-plugin SIGKILLs after 2 s.
      setTimeout(end, 200).unref();
      return {};
    },
    afterResponse: end,
  });

  const server = createGrpcServer({
    codec,
    methods,
    keyPem: certificate.keyPem,
    certPem: certificate.certPem,
    clientCaPem: check.environment.clientCertPem,
    onCallError: (path, error) => log.error("gRPC call failed", { method: path, error: String(error) }),
  });
  server.on("session", (connection: Http2Session) => {
    connections.add(connection);
    connection.once("close", () => connections.delete(connection));
  });
  server.on("tlsClientError", (error) => log.warn("TLS handshake failed", { error: error.message }));
  server.listen(0, "127.0.0.1", () => {
    const address = server.address();
    if (!address || typeof address === "string") throw new Error("the gRPC server has no TCP address");
    io.stdout(handshakeLine({ host: "127.0.0.1", port: address.port }, certificate.der));
  });
  return { close: () => stop(false) };
}
