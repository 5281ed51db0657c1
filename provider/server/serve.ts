// The provider process: check the go-plugin environment, serve tfplugin6 over mutual TLS
// on loopback, print the handshake line, and exit when Terraform says Shutdown or when
// Terraform itself is gone.

import type { ProviderDefinition } from "../framework/definitions.ts";
import { createLogger } from "../framework/logger.ts";
import { createProviderService } from "../framework/provider-service.ts";
import { descriptor } from "../protocol/descriptor.gen.ts";
import { ProtobufCodec } from "../protocol/protobuf.ts";
import { createServerCertificate } from "./certificate.ts";
import { createGrpcServer, type UnaryMethod } from "./grpc-server.ts";
import { checkPluginEnvironment, handshakeLine } from "./handshake.ts";

const PARENT_CHECK_INTERVAL_MS = 500;

export function serveProvider<P>(provider: ProviderDefinition<P>): void {
  const check = checkPluginEnvironment(process.env);
  if (!check.ok) {
    process.stderr.write(check.message);
    process.exit(1);
  }
  const log = createLogger(`provider.terraform-provider-${provider.typeName}`);

  // A terminal Ctrl-C reaches the whole process group; Terraform answers it by sending
  // StopProvider, which cancels calls in flight, and the provider must outlive it to reply.
  process.on("SIGINT", () => log.debug("SIGINT ignored: Terraform stops the provider with StopProvider"));

  const certificate = createServerCertificate();
  const service = createProviderService(provider, log);
  const methods = new Map<string, UnaryMethod>();
  for (const method of descriptor.services["tfplugin6.Provider"] ?? []) {
    const handle = (service as Partial<Record<string, UnaryMethod["handle"]>>)[method.name];
    if (handle) methods.set(`/tfplugin6.Provider/${method.name}`, { ...method, handle });
  }
  const exit = () => {
    log.debug("shutdown: exiting");
    process.exit(0);
  };
  methods.set("/plugin.GRPCController/Shutdown", {
    requestType: "plugin.Empty",
    responseType: "plugin.Empty",
    handle: async () => {
      // Should the stream never report closing, exit anyway: go-plugin SIGKILLs after 2 s.
      setTimeout(exit, 200).unref();
      return {};
    },
    afterResponse: exit,
  });

  const server = createGrpcServer({
    codec: new ProtobufCodec(descriptor),
    methods,
    keyPem: certificate.keyPem,
    certPem: certificate.certPem,
    clientCaPem: check.environment.clientCertPem,
    onCallError: (path, error) => log.error("gRPC call failed", { method: path, error: String(error) }),
  });
  server.on("tlsClientError", (error) => log.warn("TLS handshake failed", { error: error.message }));
  server.listen(0, "127.0.0.1", () => {
    const address = server.address();
    if (!address || typeof address === "string") throw new Error("the gRPC server has no TCP address");
    process.stdout.write(handshakeLine({ host: "127.0.0.1", port: address.port }, certificate.der));
  });

  // No provider outlives Terraform: if the parent dies we are re-parented, so exit.
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) {
      log.warn("Terraform is gone; exiting");
      process.exit(0);
    }
  }, PARENT_CHECK_INTERVAL_MS).unref();
}
