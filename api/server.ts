import { type ServerType, serve } from "@hono/node-server";
import { createApp } from "./app.ts";
import { type AdminTokenOutcome, ensureBootstrapAdminToken } from "./bootstrap.ts";
import { type CatalogLocation, openCatalog } from "./catalog/db.ts";
import type { Services } from "./env.ts";
import { OperationRunner } from "./orchestrator/runner.ts";
import { convergeVmGroup, deleteVmGroup } from "./orchestrator/vm-groups.ts";
import { createServices } from "./services.ts";

export interface ControlPlaneOptions {
  catalog: CatalogLocation;
  port: number;
  host?: string;
  adminToken?: string;
  /** Run the orchestrator's workers in this process (default true). */
  orchestrate?: boolean;
  log?: (line: string) => void;
}

export interface RunningControlPlane {
  url: string;
  port: number;
  services: Services;
  adminToken: AdminTokenOutcome;
  close(): Promise<void>;
}

export async function startControlPlane(options: ControlPlaneOptions): Promise<RunningControlPlane> {
  const catalog = openCatalog(options.catalog);
  await catalog.migrate();
  const adminToken = await ensureBootstrapAdminToken(catalog.db, options.adminToken);
  const services = await createServices(catalog);
  const app = createApp(services, { log: options.log });
  const runner =
    options.orchestrate === false
      ? undefined
      : new OperationRunner({
          services,
          handlers: {
            "create-vm-group": convergeVmGroup,
            "update-vm-group": convergeVmGroup,
            "delete-vm-group": deleteVmGroup,
          },
          log: options.log,
        });
  runner?.start();
  const host = options.host ?? "127.0.0.1";
  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, port: options.port, hostname: host }, () => resolve(s));
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : options.port;
  return {
    url: `http://${host}:${port}`,
    port,
    services,
    adminToken,
    async close() {
      await runner?.stop();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Long-polls would otherwise hold the close for up to a minute.
        (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      });
      await catalog.close();
    },
  };
}
